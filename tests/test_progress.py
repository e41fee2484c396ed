"""Progress lines, the end-of-job summary and the one utilization rule they share with the plots."""

import logging

import pytest

from candle_mbo.reporting import plots, progress

T0 = 1.8e9


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def make_progress(total, **options):
    handler = Lines()
    logger = logging.getLogger("test_progress.%d" % id(handler))
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return progress.Progress(total=total, objective_name="val_loss", logger=logger, **options), handler.lines


def record(i, status="ok", objective=None, error=None, worker=1, started=None, duration=1.0, **extra):
    started = T0 + i if started is None else started
    result = {"run_id": "run-%04d" % i, "status": status, "objective": objective, "duration_s": duration,
              "worker": worker, "started": started, "finished": started + duration, "params": {"x": i}}
    if error is not None:
        result["error"] = error
    result.update(extra)
    return result


# -- shortening a reason ---------------------------------------------------------------------------
def test_shorten_keeps_short_text_and_cuts_long_text_at_a_word_boundary():
    assert progress.shorten("RuntimeError:   boom\n now", 300) == "RuntimeError: boom now"
    text = " ".join("word%02d" % i for i in range(100))  # 699 characters
    short = progress.shorten(text, 100)
    assert short.endswith(" [...]") and len(short) <= 100 + len(" [...]")
    kept = short[:-len(" [...]")]
    assert text.startswith(kept + " ") and all(w in text.split() for w in kept.split())
    assert progress.shorten("x" * 400, 100) == "x" * 400  # one long word is never cut


# -- progress lines --------------------------------------------------------------------------------
def test_every_run_that_is_not_ok_gets_its_own_line_with_its_whole_reason():
    bar, lines = make_progress(200, max_lines_per_s=0.001)  # merge every ok line it can
    failures = {}
    for i in range(1, 201):
        if i % 37 == 0:
            status = ("failed", "timeout", "crashed")[i % 3]
            failures["run-%04d" % i] = "%s reason number %d: CUDA out of memory while allocating" % (status, i)
            bar.update(record(i, status, error=failures["run-%04d" % i]))
        else:
            bar.update(record(i, "ok", objective=float(i)))
    for run_id, reason in failures.items():
        own = [line for line in lines if run_id in line]
        assert len(own) == 1 and own[0].endswith("| reason: " + reason), own
    ok_lines = [line for line in lines if " ok " in line]
    assert len(ok_lines) <= 2 + len(failures)  # the first, the last, and those of the runs before each failure
    assert sum(covered(line) for line in ok_lines) == 200 - len(failures)  # every ok run is in a line
    assert "line covers" in ok_lines[-1]
    assert_the_counter_moves_by_what_each_line_covers(lines, 200)


def covered(line):
    """The runs a progress line stands for: 1, or what a merged line says it covers."""
    return int(line.split("| line covers ")[1].split()[0]) if "| line covers " in line else 1


def assert_the_counter_moves_by_what_each_line_covers(lines, done):
    counts = [int(line.split("[")[1].split("/")[0]) for line in lines]
    assert counts[-1] == done, lines
    previous = 0
    for count, line in zip(counts, lines):
        assert count - previous == covered(line), (previous, line)
        previous = count


def test_a_job_that_ends_before_its_total_still_counts_every_run():
    bar, lines = make_progress(100, max_lines_per_s=0.001)
    for i in range(1, 31):  # stopped early (--max-time, fail fast): 30 of 100
        bar.update(record(i, "ok", objective=float(i)))
    bar.flush()
    assert_the_counter_moves_by_what_each_line_covers(lines, 30)
    bar.flush()  # nothing waits any more: no line
    assert len(lines) == 2


def test_a_long_reason_is_shortened_at_a_word_boundary_on_its_line():
    bar, lines = make_progress(1)
    reason = "ValueError: " + " ".join(["the tensor shapes do not match"] * 30)
    bar.update(record(1, "failed", error=reason))
    shown = lines[0].split("| reason: ")[1]
    assert shown.endswith(" [...]") and reason.startswith(shown[:-len(" [...]")] + " ")
    assert len(shown) <= progress.REASON_CHARS + len(" [...]")


def test_a_failure_without_an_error_still_says_so():
    bar, lines = make_progress(2)
    bar.update(record(1, "crashed"))
    assert lines[0].endswith("reason: no reason recorded (status crashed)")


def test_quiet_prints_nothing_but_keeps_the_best():
    bar, lines = make_progress(2, quiet=True)
    bar.update(record(1, "ok", objective=0.5))
    bar.update(record(2, "failed", error="boom"))
    assert lines == [] and bar.best == 0.5 and bar.best_id == "run-0001"


# -- utilization -----------------------------------------------------------------------------------
def test_utilization_is_run_time_over_workers_times_the_window():
    records = [record(1, started=T0, duration=10.0, worker=1), record(2, started=T0, duration=5.0, worker=2)]
    usage = progress.utilization(records, 2)
    assert usage.fraction == pytest.approx(15.0 / 20.0) and usage.busy_s == pytest.approx(15.0)
    assert (usage.start, usage.end, usage.n_workers, usage.runs) == (T0, T0 + 10.0, 2, 2)
    assert progress.utilization(records, 4).fraction == pytest.approx(15.0 / 40.0)  # 2 workers idle all along
    assert progress.utilization(records, 1).n_workers == 2  # at least the workers seen
    clipped = progress.utilization(records, 2, start=T0 + 5.0, end=T0 + 10.0)
    assert clipped.fraction == pytest.approx(5.0 / 10.0)
    assert progress.utilization([{"run_id": "a", "status": "ok"}], 2) is None
    assert "workers busy 75% (2 workers, 10s" in progress.describe_utilization(usage)


def test_the_summary_and_the_timeline_give_the_same_utilization():
    records = [record(i, worker=1 + i % 3, started=T0 + 7 * (i // 3) + (i % 3), duration=3.0 + i % 4)
               for i in range(12)]
    records.append(record(12, "failed", error="boom", worker=2, started=T0 + 40, duration=0.001))
    text = " ".join(progress.summary(records, "val_loss", False, None, None, 3, "/exp"))
    figure = plots.timeline(records, {"workers": 3})
    title = figure.axes[0].get_title()
    busy = text.split("workers busy ")[1].split("%")[0]
    assert "workers busy %s%%" % busy in title
    assert busy == "%.0f" % (100 * progress.utilization(records, 3).fraction)


# -- the summary -----------------------------------------------------------------------------------
def hpo_records():
    records = []
    for i in range(1, 19):
        kind = "initdesign" if i <= 10 else "random_fallback" if i in (13, 17) else "infill_cb"
        status = "failed" if i in (4, 9, 15) else "timeout" if i == 11 else "ok"
        error = {"failed": "RuntimeError: injected failure", "timeout": "killed after 4 s (--timeout 2)"}.get(status)
        records.append(record(i, status, objective=1.0 / i if status == "ok" else None, error=error,
                              worker=1 + i % 2, iteration=0 if i <= 10 else i - 10, prop_type=kind))
    return records


def test_summary_counts_statuses_and_how_points_were_proposed_and_names_every_reason():
    records = hpo_records()
    lines = progress.summary(records, "val_loss", False, T0 - 5.0, 30.0, 2, "/exp")
    assert lines[0] == ("summary: 18 runs: 14 ok, 3 failed, 1 timeout, 0 crashed; proposed: 10 design, "
                        "6 model-based, 2 random fallbacks")
    assert lines[1] == "top 5 by val_loss (min):" and lines[2].startswith("  1. run-0018  0.0555556  x=18")
    failures = lines[lines.index(next(line for line in lines if line.startswith("not ok:"))):]
    assert failures[0] == "not ok: 4 runs (logs: /exp/runs/<run_id>/model.log):"
    assert failures[1] == "  3 failed (run-0004, run-0009, run-0015): RuntimeError: injected failure"
    assert failures[2] == "  1 timeout (run-0011): killed after 4 s (--timeout 2)"
    assert lines[-1].startswith("wall time 30s | first run started 6s after launch | workers busy ")
    assert lines[-1].endswith("| results in /exp")


def test_summary_of_a_resumed_job_measures_only_its_own_runs():
    records = hpo_records()
    start = T0 + 10.5  # the runs before were inherited from the first job
    lines = progress.summary(records, "val_loss", False, start, 20.0, 2, "/exp")
    mine = [r for r in records if r["started"] >= start]
    usage = progress.utilization(mine, 2)
    assert "workers busy %.0f%%" % (100 * usage.fraction) in lines[-1]
    assert usage.runs == len(mine) == 8


def test_summary_groups_many_reasons_and_points_at_the_full_list():
    records = [record(i, "failed", error="ValueError: case %d" % i) for i in range(1, 13)]
    lines = progress.summary(records, "val_loss", True, None, None, 1, "/exp", logs="logs/*.log")
    assert lines[0] == "summary: 12 runs: 0 ok, 12 failed, 0 timeout, 0 crashed"
    assert lines[1] == "not ok: 12 runs (logs: /exp/logs/*.log):"
    assert lines[-2] == "  4 more runs with 4 other reasons: see results.csv or report.html"
    assert not any(line.startswith("top ") for line in lines)


def test_proposal_kinds():
    assert [progress.proposal_kind(p) for p in ("initdesign", "infill_cb", "infill_ei", "random",
                                                "random_fallback", None)] == \
        ["design", "model-based", "model-based", "random", "random fallback", None]
    assert progress.proposal_counts([{"status": "ok"}]) == []  # UPF records carry no prop_type
