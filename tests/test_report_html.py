"""report.html in a real browser (Debian's chromium, headless, driven through the DevTools protocol).

A search with injected faults (failures, crashes, timeouts) runs once for the module; then the page
must load without a console error, show every run (each failure with its reason), sort when a column
title is clicked and filter as one types. A page of hostile run ids, errors and parameters must show
them as text and run none of them.
"""

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from conftest import FIXTURES, describe, kill_group, launch, read_records, requires_mpi

websocket = pytest.importorskip("websocket", reason="python3-websocket is missing (make setup installs it)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
requires_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is missing (make setup installs it)")

FAULTY = os.path.join(FIXTURES, "faulty.py")


class Browser:
    """A headless chromium and one page of it, through the DevTools protocol (JSON over a websocket)."""

    def __init__(self, profile, width=1280, height=900, timeout=60):
        self.profile = str(profile)
        self.log = open(os.path.join(self.profile + ".log"), "w")
        command = [CHROMIUM, "--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
                   "--disable-extensions", "--disable-background-networking", "--hide-scrollbars", "--remote-debugging-port=0",
                   "--remote-allow-origins=*", "--user-data-dir=" + self.profile,
                   "--window-size=%d,%d" % (width, height), "about:blank"]
        if os.geteuid() == 0:
            command.insert(1, "--no-sandbox")  # chromium refuses to run as root with its sandbox
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.events = []
        self._id = 0
        try:
            port = self._port(timeout)
            with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=timeout) as reply:
                targets = json.load(reply)
            page = next(t for t in targets if t.get("type") == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=timeout,
                                                  suppress_origin=True)
            for domain in ("Page", "Runtime", "Log"):
                self.send(domain + ".enable")
        except BaseException:
            self.close()
            raise

    def _port(self, timeout):
        """Chromium writes the port it chose into DevToolsActivePort once it listens."""
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("chromium exited with %s: %s" % (self.process.returncode, self._output()))
            try:
                with open(path) as handle:
                    first = handle.readline().strip()
                if first:
                    return int(first)
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port in %d s: %s" % (timeout, self._output()))

    def _output(self):
        self.log.flush()
        with open(self.log.name) as handle:
            return handle.read()[-2000:]

    def send(self, method, **params):
        """Call a DevTools method and return its result; events that arrive meanwhile are kept."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError("%s: %s" % (method, message["error"]))
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for message in self.events:
                if message.get("method") == event:
                    self.events.remove(message)
                    return message
            self.ws.settimeout(max(0.1, deadline - time.time()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
        raise AssertionError("no %s within %d s" % (event, timeout))

    def open(self, path):
        """Load a local file and wait for its load event."""
        self.events.clear()
        self.send("Page.navigate", url="file://" + urllib.parse.quote(os.path.abspath(path)))
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError("%s raised %s" % (expression, result["exceptionDetails"]))
        return result["result"].get("value")

    def click(self, selector):
        """A real mouse click (pressed and released) at the middle of the element."""
        box = self.evaluate("(() => { const e = document.querySelector(%s); e.scrollIntoView({block: 'center'});"
                            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
                            " })()" % json.dumps(selector))
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector, text):
        """Focus the element and type ``text`` as keyboard input would (fires input events)."""
        self.evaluate("document.querySelector(%s).focus()" % json.dumps(selector))
        self.send("Input.insertText", text=text)

    def clear(self, selector):
        """Select the element's text and delete it with the Backspace key."""
        self.evaluate("document.querySelector(%s).select()" % json.dumps(selector))
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key="Backspace", code="Backspace",
                      windowsVirtualKeyCode=8, nativeVirtualKeyCode=8)

    def problems(self):
        """Console errors and warnings, uncaught exceptions, dialogs and failed loads seen so far."""
        self.send("Runtime.evaluate", expression="0")  # flush events that are on their way
        found = []
        for message in self.events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append("exception: %s" % params["exceptionDetails"])
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append("console.%s: %s" % (params["type"], params.get("args")))
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                found.append("log %s: %s" % (params["entry"]["level"], params["entry"].get("text")))
            elif method == "Page.javascriptDialogOpening":
                found.append("dialog: %s" % params.get("message"))
        return found

    def close(self):
        try:
            if getattr(self, "ws", None):
                self.ws.close()
        finally:
            if self.process.poll() is None:
                kill_group(self.process)
            self.process.wait(timeout=30)
            self.log.close()


@pytest.fixture
def browser(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is missing (make setup installs it)")
    instance = Browser(tmp_path / "chromium-profile")
    yield instance
    instance.close()


# -- a real search with faults -----------------------------------------------------------------
@pytest.fixture(scope="module")
def faulty_search(tmp_path_factory, mlrmbo):
    """An HPO of the faulty benchmark: failures for x > 1.5, crashes for y < -3.4, hangs for x < -2.0. The
    design's Latin hypercube has a point in each tenth of each range, so that every kind of failure occurs;
    sync mode with a seed proposes the same points every time."""
    folder = tmp_path_factory.mktemp("faulty")
    regions = folder / "regions.txt"
    regions.write_text("[Global_Params]\nmodel_name = 'faulty'\nfail_if_x_above = 1.5\ncrash_if_y_below = -3.4\n"
                       "hang_if_x_below = -2.0\n")
    out = folder / "out"
    result = launch("candle_mbo", ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"),
                                   "--default-model", regions, "--output", out, "--budget", 16, "--design-size", 10,
                                   "--seed", 4, "--timeout", 2, "--mode", "sync"], np=3, timeout=400)
    assert result.returncode == 0, describe(result)
    return out, result


ROWS = "Array.from(document.querySelectorAll('#runs tbody tr'))"
VISIBLE = ROWS + ".filter(r => !r.hidden)"


def column(browser, key, visible_only=True):
    """The cells of a column of the table, in the order shown: (data-v or text) per row."""
    return browser.evaluate(
        "(() => { const i = Array.from(document.querySelectorAll('#runs thead th')).findIndex("
        "th => th.dataset.key === %s); return %s.map(r => { const c = r.cells[i];"
        " return c.hasAttribute('data-v') ? parseFloat(c.dataset.v) : c.textContent.trim(); }); })()"
        % (json.dumps(key), VISIBLE if visible_only else ROWS))


@requires_mpi
@requires_chromium
def test_every_failure_is_named_with_its_reason_in_the_output_and_the_page(faulty_search, browser):
    out, result = faulty_search
    records = read_records(out)
    failed = [r for r in records if r["status"] != "ok"]
    assert {r["status"] for r in failed} >= {"failed", "crashed", "timeout"}, [r["status"] for r in records]
    lines = result.stdout.splitlines()
    for record in failed:
        own = [line for line in lines if " %s " % record["status"] in line and record["run_id"] in line]
        assert own and own[0].endswith("reason: " + record["error"]), (record, own)  # its own line, whole reason
    with open(out / "results.csv", newline="", encoding="utf-8") as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle)}
    for record in failed:  # results.csv keeps the whole reason
        assert rows[record["run_id"]]["error"] == record["error"]
    assert all(rows[r["run_id"]]["error"] == "" for r in records if r["status"] == "ok")
    for reason in {r["error"] for r in failed}:  # so does the job's own summary
        assert any(line.endswith(reason) for line in lines), reason
    report = subprocess.run([sys.executable, "-m", "candle_mbo.report", str(out)], capture_output=True, text=True,
                            timeout=300)
    assert report.returncode == 0, report.stderr
    summary = report.stdout.splitlines()
    assert summary[0].startswith("summary: %d runs" % len(records))
    for reason in {r["error"] for r in failed}:  # the summary names every reason
        assert any(line.endswith(reason) for line in summary), (reason, summary)
    browser.open(out / "report.html")
    assert browser.problems() == []
    assert sorted(column(browser, "run_id")) == sorted(r["run_id"] for r in records)
    shown = dict(zip(column(browser, "run_id"), column(browser, "error")))
    for record in failed:
        assert shown[record["run_id"]] == record["error"]
    links = browser.evaluate("Array.from(document.querySelectorAll('#runs tbody a')).map(a => a.getAttribute('href'))")
    assert len(links) == 2 * len(records)  # the folder and the model.log of each run
    for link in links:
        assert os.path.exists(out / urllib.parse.unquote(link)), link
    images = browser.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 100])")
    assert [name for name, _ in images] == ["convergence.png", "params.png", "learning_curves.png", "timeline.png"]
    assert all(loaded for _, loaded in images)


@requires_mpi
@requires_chromium
def test_the_table_sorts_and_filters(faulty_search, browser):
    out, _ = faulty_search
    records = read_records(out)
    browser.open(out / "report.html")
    browser.click("#runs thead th[data-key=objective] button")
    values = column(browser, "objective")
    numbers = [v for v in values if v != ""]
    assert numbers == sorted(numbers) and values[len(numbers):] == [""] * (len(values) - len(numbers))
    assert len(numbers) == sum(r["status"] == "ok" for r in records)
    browser.click("#runs thead th[data-key=objective] button")
    values = column(browser, "objective")
    assert [v for v in values if v != ""] == sorted(numbers, reverse=True) and values[-1] == ""
    browser.click("#runs thead th[data-key=status] button")
    assert column(browser, "status") == sorted(r["status"] for r in records)
    browser.type("#filter", "crashed")
    assert set(column(browser, "status")) == {"crashed"}
    assert len(column(browser, "status")) == sum(r["status"] == "crashed" for r in records)
    shown = browser.evaluate("document.getElementById('shown').textContent")
    assert shown == "%d of %d runs" % (len(column(browser, "status")), len(records))
    browser.clear("#filter")
    assert len(column(browser, "status")) == len(records)
    browser.evaluate("(() => { const s = document.getElementById('status-filter'); s.value = 'not-ok';"
                     " s.dispatchEvent(new Event('change')); })()")
    assert sorted(column(browser, "run_id")) == sorted(r["run_id"] for r in records if r["status"] != "ok")
    assert browser.problems() == []


# -- hostile data --------------------------------------------------------------------------------
HOSTILE = ['<script>alert("id")</script>', '"><img src=x onerror=alert(1)>', "a&amp;b", "<b>bold</b>"]


@requires_chromium
def test_hostile_text_is_shown_not_run(tmp_path, browser):
    from test_report import hpo_records, write_experiment

    records = hpo_records(8)
    for record, text in zip(records, HOSTILE):
        record["run_id"] = "id-" + text.replace("/", "_")
        record["status"], record["objective"], record["error"] = "failed", None, "ValueError: " + text
        record["params"]["activation"] = text
    directory = write_experiment(tmp_path / "hostile", "hpo", records)
    for record in records:
        os.makedirs(os.path.join(directory, "runs", record["run_id"]))
        with open(os.path.join(directory, "runs", record["run_id"], "model.log"), "w") as handle:
            handle.write("log\n")
    from candle_mbo import reporting as report

    report.render(directory)
    browser.open(os.path.join(directory, "report.html"))
    assert browser.problems() == []
    assert browser.evaluate("document.querySelectorAll('#runs script, #runs img, #runs b').length") == 0
    assert sorted(column(browser, "run_id")) == sorted(r["run_id"] for r in records)
    errors = column(browser, "error")
    for text in HOSTILE:
        assert "ValueError: " + text in errors
    for link in browser.evaluate("Array.from(document.querySelectorAll('#runs tbody a')).map(a => a.href)"):
        assert os.path.exists(urllib.parse.unquote(urllib.parse.urlparse(link).path)), link


@requires_chromium
def test_a_long_table_shows_a_page_and_still_sorts_and_filters_every_run(tmp_path, browser, monkeypatch):
    from test_report import hpo_records, write_experiment
    from candle_mbo import reporting as report
    from candle_mbo.reporting import html as report_html

    monkeypatch.setattr(report_html, "PAGE_ROWS", 5)
    records = hpo_records(20)
    directory = write_experiment(tmp_path / "long", "hpo", records)
    report.render(directory)
    browser.open(os.path.join(directory, "report.html"))
    assert len(column(browser, "run_id")) == 5 and len(column(browser, "run_id", visible_only=False)) == 20
    assert browser.evaluate("document.getElementById('shown').textContent") == "all 20 runs (the first 5 shown)"
    browser.click("#runs thead th[data-key=objective] button")
    best = sorted(r["objective"] for r in records if r["status"] == "ok")[:5]
    assert column(browser, "objective") == best  # the 5 best of all 20, not of the 5 shown before
    browser.type("#filter", "boom")  # the error of the 2 runs that are not ok, wherever they were
    assert sorted(column(browser, "run_id")) == sorted(r["run_id"] for r in records if r["status"] != "ok")
    browser.clear("#filter")
    browser.click("#show-all")
    assert len(column(browser, "run_id")) == 20
    assert browser.evaluate("document.getElementById('show-all').hidden") is True
    assert browser.problems() == []


@requires_chromium
def test_the_run_id_stays_in_view_while_a_wide_table_scrolls_sideways(tmp_path, browser):
    from test_report import hpo_records, write_experiment
    from candle_mbo import reporting as report

    records = hpo_records(6)
    for record in records:  # a wide parameter list
        record["params"].update(("parameter_with_a_long_name_%02d" % i, 0.001 * i) for i in range(40))
    directory = write_experiment(tmp_path / "wide", "hpo", records)
    report.render(directory)
    browser.open(os.path.join(directory, "report.html"))
    geometry = ("(() => { const s = document.querySelector('.scroll'); s.scrollLeft = %s;"
                " window.scrollTo(0, s.getBoundingClientRect().top + window.scrollY);"
                " const cell = document.querySelector('#runs tbody tr td'); const head = document.querySelector("
                "'#runs thead th'); const box = cell.getBoundingClientRect(); const frame = s.getBoundingClientRect();"
                " const hit = document.elementFromPoint(box.x + 5, box.y + box.height / 2);"
                " return [s.scrollLeft, s.scrollWidth - s.clientWidth, box.x - frame.x, head.getBoundingClientRect().x"
                " - frame.x, cell.contains(hit), cell.textContent]; })()")
    left, room, cell_x, head_x, on_top, text = browser.evaluate(geometry % "0")
    assert room > 1000 and text in {r["run_id"] for r in records}  # the table is much wider than its frame
    scrolled, _, cell_x2, head_x2, on_top2, _ = browser.evaluate(geometry % "1500")
    assert scrolled == 1500
    assert abs(cell_x2 - cell_x) < 2 and abs(head_x2 - head_x) < 2  # the id column did not move
    assert on_top and on_top2  # and no other cell is drawn over it
    assert browser.problems() == []
