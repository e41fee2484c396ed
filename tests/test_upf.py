"""UPF workflow for real: subprocesses, with and without mpiexec, faults, kill -9 and resume."""

import csv
import json
import os
import signal
import time

import pytest

from conftest import FIXTURES, describe, kill_group, launch, read_records, requires_mpi, write_upf

FAULTY = os.path.join(FIXTURES, "faulty.py")


def upf_run(tmp_path, lines, np=None, extra=(), output="out", timeout=240, extra_env=None):
    upf = write_upf(tmp_path / "runs.upf", lines)
    args = ["--model", FAULTY, "--upf", upf, "--output", str(tmp_path / output), "--no-report"] + list(extra)
    return launch("candle_mbo.upf", args, np=np, timeout=timeout, extra_env=extra_env)


def test_without_mpiexec(tmp_path):
    result = upf_run(tmp_path, [{"id": "a", "value": 2}, {"value": 3}, "", "# comment", {"id": "c", "value": "4"},
                                {"id": "baseline"}])
    assert result.returncode == 0, describe(result)
    records = {r["run_id"]: r for r in read_records(tmp_path / "out")}
    assert {k: r["objective"] for k, r in records.items()} == {"a": 2.0, "line-2": 3.0, "c": 4.0, "baseline": 1.0}
    assert "4 ok" in result.stdout
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert best == {"run_id": "baseline", "objective": 1.0, "params": {}}
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        rows = {row["run_id"]: row for row in csv.DictReader(handle)}
    assert rows["baseline"]["value"] == "1.0"  # the benchmark's default, which the baseline line ran with
    assert rows["a"]["value"] == "2"
    for name in ("experiment.yaml", "results.csv", "runs/a/params.json", "runs/a/result.json", "runs/a/model.log"):
        assert (tmp_path / "out" / name).exists(), name


@requires_mpi
def test_dynamic_load_balancing_and_completion_order(tmp_path):
    """The long run is dispatched first and recorded last: records come in as runs end (the workers' own
    finish times are not compared: two ending a millisecond apart may arrive either way)."""
    lines = [{"id": "long", "sleep": 8}] + [{"id": "s%d" % i, "sleep": 0.2} for i in range(9)]
    start = time.time()
    result = upf_run(tmp_path, lines, np=4)
    assert result.returncode == 0, describe(result)
    records = read_records(tmp_path / "out")
    assert len(records) == 10
    assert records[-1]["run_id"] == "long"  # recorded in completion order, not dispatch order
    by_worker = {}
    for r in records:
        by_worker.setdefault(r["worker"], []).append(r["run_id"])
    long_worker = next(w for w, ids in by_worker.items() if "long" in ids)
    assert len(by_worker[long_worker]) <= 2, by_worker  # the others took the short runs meanwhile
    assert len(by_worker) == 3
    assert time.time() - start < 60


@requires_mpi
def test_model_imported_once_per_worker(tmp_path):
    marker = tmp_path / "imports"
    lines = [{"id": "r%d" % i} for i in range(12)]
    result = upf_run(tmp_path, lines, np=3, extra_env={"FAULTY_MARKER_DIR": str(marker)})
    assert result.returncode == 0, describe(result)
    # one import in the master's probe, one per worker's resident runner: 12 runs, 3 imports
    assert len(os.listdir(marker)) == 3


@requires_mpi
def test_faults_among_good_runs(tmp_path):
    lines = [{"id": "good1"}, {"id": "boom", "fate": "raise"}, {"id": "segv", "fate": "segv"},
             {"id": "slow", "fate": "hang"}, {"id": "good2", "value": 0.5}, {"id": "exit", "fate": "exit"},
             {"id": "nan", "fate": "nan"}, {"id": "good3"}]
    result = upf_run(tmp_path, lines, np=3, extra=["--timeout", "2"])
    assert result.returncode == 0, describe(result)
    status = {r["run_id"]: r["status"] for r in read_records(tmp_path / "out")}
    assert status == {"good1": "ok", "boom": "failed", "segv": "crashed", "slow": "timeout", "good2": "ok",
                      "exit": "crashed", "nan": "failed", "good3": "ok"}
    assert "8 runs: 3 ok, 2 failed, 1 timeout, 2 crashed" in result.stdout


@requires_mpi
def test_kill_then_resume_loses_and_repeats_nothing(tmp_path):
    lines = [{"id": "r%02d" % i, "sleep": 0.4} for i in range(16)]
    upf = write_upf(tmp_path / "runs.upf", lines)
    out = tmp_path / "out"
    args = ["--model", FAULTY, "--upf", upf, "--output", str(out), "--no-report"]
    process = launch("candle_mbo.upf", args, np=3, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "results.jsonl").exists() and len(read_records(out)) >= 5:
            break
        time.sleep(0.1)
    kill_group(process, signal.SIGKILL)
    process.wait(timeout=30)
    before = read_records(out)
    assert 5 <= len(before) < 16
    result = launch("candle_mbo.upf", args + ["--resume"], np=3)
    assert result.returncode == 0, describe(result)
    after = read_records(out)
    ids = [r["run_id"] for r in after]
    assert sorted(ids) == sorted(line["id"] for line in lines) and len(ids) == len(set(ids))
    assert after[:len(before)] == before  # nothing finished was lost or rewritten
    csv_ids = [row.split(",")[0] for row in (out / "results.csv").read_text().splitlines()[1:]]
    assert csv_ids == ids


@pytest.mark.parametrize("content, message", [
    ('{"id": "a"}\n{"id": "b", oops}\n', ":2: invalid JSON"),
    ('{"id": "a"}\n[1, 2]\n', ":2: expected a JSON object"),
    ('{"id": "a"}\n{"id": "a"}\n', ":2: duplicate id 'a'"),
    ('{"id": "../escape"}\n', ":1: run id '../escape' is not a safe file name"),
    ('{"id": "a/b"}\n', ":1: run id 'a/b'"),
    ('{"id": ""}\n', ":1: a run id must be a non-empty string"),
    ('{"id": "bad\\u0007bell"}\n', ":1: run id"),
    ("# only a comment\n\n", "no parameter sets"),
    ('{"x": NaN}\n', ":1: NaN is not allowed"),
])
def test_bad_upf_files_exit_2_and_run_nothing(tmp_path, content, message):
    upf = tmp_path / "bad.upf"
    upf.write_text(content)
    marker = tmp_path / "imports"
    result = launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", tmp_path / "out"],
                    extra_env={"FAULTY_MARKER_DIR": str(marker)}, timeout=60)
    assert result.returncode == 2, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and str(upf) in errors[0], result.stderr
    assert not (tmp_path / "out").exists() and not marker.exists()


@pytest.mark.parametrize("bad, message", [
    ('{"id": "b", "value": "0.1x"}', "parameter value = '0.1x' is not a valid float value"),
    ('{"id": "b", "megabytes": 2.5}', "parameter megabytes = 2.5 is not a valid int value"),
    ('{"id": "b", "epochs": "many"}', "parameter epochs = 'many' is not a valid int value"),
])
def test_a_bad_value_is_refused_before_anything_runs(tmp_path, bad, message):
    """Issue 21 item 8: a value the benchmark's definitions refuse was a failed run and exit 0; now exit 2 naming
    file:line, the parameter, the value and the type wanted, and nothing runs."""
    upf = write_upf(tmp_path / "bad.upf", ['{"id": "a", "value": 0.5, "megabytes": 3}', "# a comment", bad])
    result = launch("candle_mbo.upf", ["--model", FAULTY, "--upf", upf, "--output", tmp_path / "out"], timeout=120)
    assert result.returncode == 2, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("%s:3: %s" % (upf, message)) in errors[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_unicode_ids_are_fine(tmp_path):
    result = upf_run(tmp_path, [{"id": "düsseldorf-α"}])
    assert result.returncode == 0, describe(result)
    assert (tmp_path / "out" / "runs" / "düsseldorf-α" / "result.json").exists()


@requires_mpi
def test_bad_input_under_mpiexec_ends_every_rank(tmp_path):
    start = time.time()
    result = launch("candle_mbo.upf", ["--model", tmp_path / "missing.py", "--upf", tmp_path / "x.upf"], np=3,
                    timeout=60)
    assert result.returncode == 2 and time.time() - start < 30
    assert "error: model file not found" in result.stderr or "error: --upf" in result.stderr


@requires_mpi
@pytest.mark.parametrize("module", ["candle_mbo.upf", "candle_mbo"])
def test_resuming_a_finished_experiment_ends_every_rank(tmp_path, module):
    out = tmp_path / "out"
    if module == "candle_mbo.upf":
        args = ["--model", FAULTY, "--upf", write_upf(tmp_path / "r.upf", [{"id": "a"}, {"id": "b"}])]
    else:
        args = ["--model", FAULTY, "--space", os.path.join(FIXTURES, "faulty_space.R"), "--budget", 5]
    args += ["--output", out, "--no-report"]
    first = launch(module, args, np=3, timeout=180)
    assert first.returncode == 0, describe(first)
    again = launch(module, args + ["--resume"], np=3, timeout=120)  # a requeued job: nothing left to do
    assert again.returncode == 0, describe(again)
    assert len(read_records(out)) in (2, 5)


@requires_mpi
@pytest.mark.parametrize("isolation", ["process", "none"])
def test_many_short_runs_without_run_dirs(tmp_path, isolation):
    """Hundreds of millisecond runs (they travel in chunks), no runs/<id>/: every line exactly once."""
    lines = [{"id": "r%03d" % i, "value": i} for i in range(300)]
    lines[123] = {"id": "r123", "fate": "raise"}
    lines[210] = {"id": "r210", "fate": "segv" if isolation == "process" else "nan"}
    lines[250] = {"id": "r250", "fate": "hang"}  # inside a chunk: killed at its own timeout
    result = upf_run(tmp_path, lines, np=4, extra=["--no-run-dirs", "--isolation", isolation, "--quiet",
                                                   "--timeout", 3])
    assert result.returncode == 0, describe(result)
    out = tmp_path / "out"
    records = read_records(out)
    assert sorted(r["run_id"] for r in records) == sorted(line["id"] for line in lines)
    status = {r["run_id"]: r["status"] for r in records}
    assert status.pop("r123") == "failed"
    assert status.pop("r210") == ("crashed" if isolation == "process" else "failed")
    assert status.pop("r250") == "timeout"
    assert set(status.values()) == {"ok"}
    r7 = next(r for r in records if r["run_id"] == "r007")
    assert r7["objective"] == 7.0 and r7["history"]["val_loss"][-1] == 7.0 and r7["params"] == {"value": 7}
    assert not os.listdir(out / "runs")
    assert {p.name for p in (out / "scratch").iterdir()} == {"worker-1", "worker-2", "worker-3"}
    logs = "".join(p.read_text() for p in (out / "logs").glob("*.log"))
    assert "[candle_mbo] run r123" in logs and "RuntimeError: injected failure" in logs
    assert "fate: ok" not in result.stdout  # run output stays out of the job's output
    again = upf_run(tmp_path, lines, np=3, extra=["--resume"])  # the stored setting is kept
    assert again.returncode == 0, describe(again)
    assert not os.listdir(out / "runs")
