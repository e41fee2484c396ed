"""The task journal (issue 11): signals, replay of interrupted runs from their own checkpoint, pinned inputs,
options on resume, half-created experiments. UPF here; the HPO forms are in test_hpo_resume.py."""

import os
import re
import shutil
import signal

import pytest
import yaml

from conftest import (FIXTURES, ROOT, describe, kill_group, launch, read_journal, read_records, requires_mpi,
                      session_pids, write_upf)
from test_faults import wait_until

FAULTY = os.path.join(FIXTURES, "faulty.py")
CKPT = os.path.join(FIXTURES, "ckpt_model.py")


def upf(tmp_path, lines, model=FAULTY, np=None, extra=(), timeout=180, wait=True, upf_name="runs.upf", **kw):
    path = tmp_path / upf_name
    if lines is not None:
        write_upf(path, lines)
    args = ["--model", model, "--upf", str(path), "--output", str(tmp_path / "out"), "--no-report"] + list(extra)
    return launch("candle_mbo.upf", args, np=np, timeout=timeout, wait=wait, **kw)


def resume(tmp_path, np=None, extra=(), timeout=180, **kw):
    args = ["--output", str(tmp_path / "out"), "--resume", "--no-report"] + list(extra)
    return launch("candle_mbo.upf", args, np=np, timeout=timeout, **kw)


def started(tmp_path, run_ids):
    return all((tmp_path / "out" / "runs" / r / "epochs.log").exists() for r in run_ids)


def epochs_trained(tmp_path, run_id):
    path = tmp_path / "out" / "runs" / run_id / "epochs.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def finish(process, timeout=30):
    try:
        out, err = process.communicate(timeout=timeout)
    except Exception:
        kill_group(process)
        raise
    return process.returncode, out, err


@requires_mpi
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)])
def test_a_signal_under_mpiexec_stops_every_rank_and_says_how_to_continue(tmp_path, sig):
    lines = [{"id": "r%d" % i, "x": i, "epoch_s": 0.3, "epochs": 20} for i in range(5)]
    process = upf(tmp_path, lines, model=CKPT, np=3, wait=False)
    # both running (the workers may start seconds apart on a busy machine): neither has finished
    assert wait_until(lambda: all(3 <= epochs_trained(tmp_path, r) < 20 for r in ("r0", "r1")), 90)
    process.send_signal(sig)  # to mpiexec, as Ctrl-C or a scheduler would
    code, out, err = finish(process)
    assert wait_until(lambda: not session_pids(process.pid), 10)  # every rank and runner ended
    # OpenMPI turns both into SIGTERM for the ranks, and mpiexec itself exits 1: the line says what rank 0 saw
    assert "stopped by SIGTERM (Ctrl-C or the scheduler)" in out and code == 1, (code, out)
    assert "continue with: mpiexec -n 3 " in out and "--resume" in out
    journal = read_journal(tmp_path / "out")
    interrupted = [e for e in journal if e.get("event") == "interrupted"]
    assert interrupted and {"r0", "r1"} <= set(interrupted[0]["run_ids"])
    assert interrupted[0]["signal"] == "SIGTERM" and interrupted[0]["exit_code"] == 143  # rank 0's status
    attempts = interrupted[0]["running"]  # where and since when each running run ran, for the timeline
    assert {"r0", "r1"} <= set(attempts) and all(a["worker"] in (1, 2) for a in attempts.values())
    settings = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert (settings["exit_code"], settings["stopped_by"]) == (143, "SIGTERM") and settings["ended"]
    again = resume(tmp_path, np=3)
    assert again.returncode == 0, describe(again)
    settings = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert settings["exit_code"] == 143 and "--resume" not in settings["command"]  # the first job, kept
    assert [r["exit_code"] for r in settings["resumes"]] == [0] and "--resume" in settings["resumes"][0]["command"]
    log = (tmp_path / "out" / "runs" / "r0" / "model.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("[candle_mbo] attempt")]
    assert [h.split()[2].rstrip(",") for h in headers] == ["1", "2"], log  # each attempt opens with its number
    assert log.index("restored from epoch") > log.index(headers[1])
    records = read_records(tmp_path / "out")
    assert sorted(r["run_id"] for r in records) == ["r%d" % i for i in range(5)]
    for run_id in ("r0", "r1"):  # continued from their own checkpoint: at most one epoch repeated
        assert epochs_trained(tmp_path, run_id) <= 20 + 1, run_id
    dispatched = [e for e in read_journal(tmp_path / "out") if e.get("event") == "dispatched"]
    assert len(dispatched) == 5  # the reruns kept their journal entries: one per task


def test_ctrl_c_without_mpiexec_exits_130_with_the_resume_command(tmp_path):
    lines = [{"id": "r%d" % i, "x": i, "epoch_s": 0.3} for i in range(3)]
    process = upf(tmp_path, lines, model=CKPT, wait=False)
    assert wait_until(lambda: epochs_trained(tmp_path, "r0") >= 2, 90)
    os.kill(process.pid, signal.SIGINT)
    code, out, err = finish(process)
    assert code == 130, out + err
    assert "stopped by SIGINT (Ctrl-C): 0 finished, 3 interrupted" in out
    command = out.split("continue with: ", 1)[1].splitlines()[0]
    assert command.endswith("-m candle_mbo.upf --output %s --resume" % (tmp_path / "out"))
    assert not command.startswith(("mpiexec", "srun")), command  # 20.8: as the job was started, without a launcher
    again = resume(tmp_path)
    assert again.returncode == 0, describe(again)
    assert epochs_trained(tmp_path, "r0") <= 11


@requires_mpi
def test_sigusr1_with_grace_lets_running_runs_finish(tmp_path):
    lines = [{"id": "r%d" % i, "x": i, "epoch_s": 0.2, "epochs": 8} for i in range(6)]
    process = upf(tmp_path, lines, model=CKPT, np=3, wait=False, extra=["--grace", "30"])
    assert wait_until(lambda: started(tmp_path, ["r0", "r1"]), 90)
    process.send_signal(signal.SIGUSR1)  # OpenMPI forwards it to the ranks
    code, out, err = finish(process, timeout=60)
    assert code == 128 + signal.SIGUSR1, out + err
    records = {r["run_id"]: r for r in read_records(tmp_path / "out")}
    assert {"r0", "r1"} <= set(records) and all(r["status"] == "ok" for r in records.values())
    assert "waiting up to 30 s" in out
    assert len(records) < 6  # queued lines did not start
    again = resume(tmp_path, np=3)
    assert again.returncode == 0, describe(again)
    assert len(read_records(tmp_path / "out")) == 6


def test_kill_9_then_resume_continues_interrupted_runs_from_their_checkpoint(tmp_path):
    lines = [{"id": "r%d" % i, "x": i, "epoch_s": 0.25} for i in range(2)]
    process = upf(tmp_path, lines, model=CKPT, wait=False, extra=["--no-report"])
    assert wait_until(lambda: epochs_trained(tmp_path, "r0") >= 4, 90)
    kill_group(process, signal.SIGKILL)
    process.wait(timeout=30)
    done_before = epochs_trained(tmp_path, "r0")
    again = resume(tmp_path)
    assert again.returncode == 0, describe(again)
    assert "restored from epoch" in (tmp_path / "out" / "runs" / "r0" / "model.log").read_text()
    total = epochs_trained(tmp_path, "r0") + epochs_trained(tmp_path, "r1")
    assert total <= 2 * 10 + 1, (done_before, total)  # the budget's epochs + one interval for the interrupted run


def test_edited_inputs_are_refused_on_resume_unless_accepted(tmp_path):
    lines = [{"id": "a"}, {"id": "b", "fate": "sleep"}]
    process = upf(tmp_path, lines, wait=False, extra=["--default-model", os.path.join(FIXTURES, "faulty_params.txt")])
    assert wait_until(lambda: len(read_records(tmp_path / "out")) == 1 if (tmp_path / "out" / "results.jsonl").exists()
                      else False, 60)
    kill_group(process, signal.SIGKILL)
    process.wait(timeout=30)
    journal_before = (tmp_path / "out" / "results.jsonl").read_bytes()
    write_upf(tmp_path / "runs.upf", [{"id": "a"}, {"id": "b", "value": 3}])  # an edited line
    refused = resume(tmp_path)
    assert refused.returncode == 2, describe(refused)
    assert "the UPF file %s changed since the experiment started" % (tmp_path / "runs.upf") in refused.stderr
    assert "--accept-changed" in refused.stderr
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == journal_before  # nothing appended
    settings_before = (tmp_path / "out" / "experiment.yaml").read_bytes()
    accepted = resume(tmp_path, extra=["--accept-changed"])
    assert accepted.returncode == 2 and "already ran with other parameters" in accepted.stderr  # b was dispatched
    assert (tmp_path / "out" / "experiment.yaml").read_bytes() == settings_before  # refused before any change
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == journal_before
    write_upf(tmp_path / "runs.upf", [{"id": "a"}, {"id": "b", "fate": "sleep"}, {"id": "c"}])
    accepted = resume(tmp_path, extra=["--accept-changed", "--timeout", "2"])
    assert accepted.returncode == 0, describe(accepted)
    assert {r["run_id"]: r["status"] for r in read_records(tmp_path / "out")} == {"a": "ok", "b": "timeout", "c": "ok"}


def test_an_edited_model_is_refused_on_resume(tmp_path):
    model = tmp_path / "model" / "faulty.py"
    model.parent.mkdir()
    shutil.copy(FAULTY, model)
    shutil.copy(os.path.join(FIXTURES, "faulty_params.txt"), model.parent)
    result = upf(tmp_path, [{"id": "a"}], model=str(model))
    assert result.returncode == 0, describe(result)
    write_upf(tmp_path / "runs.upf", [{"id": "a"}, {"id": "b"}])
    model.write_text(model.read_text() + "\n# a comment\n")
    refused = launch("candle_mbo.upf", ["--output", str(tmp_path / "out"), "--resume", "--accept-changed"],
                     timeout=60)
    assert refused.returncode == 0, describe(refused)  # accepted: the model and the UPF changed
    model.write_text(model.read_text() + "\n# another\n")
    refused = resume(tmp_path)
    assert refused.returncode == 2 and "the model file %s changed" % model in refused.stderr, describe(refused)
    accepted = launch("candle_mbo.upf", ["--output", str(tmp_path / "out"), "--resume", "--accept-changed"], timeout=60)
    assert accepted.returncode == 0, describe(accepted)
    defaults = model.parent / "faulty_params.txt"
    defaults.write_text(defaults.read_text().replace("value = 1.0", "value = 2.0"))
    refused = resume(tmp_path)
    assert refused.returncode == 2, describe(refused)
    assert "the benchmark's defaults file %s changed" % defaults in refused.stderr


def test_typed_options_override_stored_ones_and_identity_options_must_match(tmp_path, monkeypatch):
    first = upf(tmp_path, [{"id": "a", "fate": "sleep"}], extra=["--timeout", "1"])
    assert first.returncode == 0, describe(first)
    write_upf(tmp_path / "runs.upf", [{"id": "a", "fate": "sleep"}, {"id": "b", "sleep": 1.5}])
    again = launch("candle_mbo.upf", ["--output", str(tmp_path / "out"), "--resume", "--accept-changed",
                                      "--timeout", "0"], timeout=60)  # typed, equal to the default: it counts
    assert again.returncode == 0, describe(again)
    assert {r["run_id"]: r["status"] for r in read_records(tmp_path / "out")}["b"] == "ok"
    other = launch("candle_mbo.upf", ["--output", str(tmp_path / "out"), "--resume", "--objective", "loss"],
                   timeout=60)
    assert other.returncode == 2 and "--objective loss differs from the experiment's val_loss" in other.stderr


def test_paths_are_stored_absolute_so_a_resume_works_from_another_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(os.path.join(FIXTURES, "faulty_params.txt"), work / "defaults.txt")
    write_upf(work / "runs.upf", [{"id": "a", "fate": "sleep"}])
    args = ["--model", FAULTY, "--upf", "runs.upf", "--default-model", "defaults.txt", "--output", "out",
            "--timeout", "1", "--no-report"]
    first = launch("candle_mbo.upf", args, cwd=str(work), timeout=60)
    assert first.returncode == 0, describe(first)
    elsewhere = launch("candle_mbo.upf", ["--output", str(work / "out"), "--resume"], cwd=str(tmp_path), timeout=60)
    assert elsewhere.returncode == 0, describe(elsewhere)


@requires_mpi
def test_a_resume_with_fewer_workers_warns_and_the_experiment_keeps_its_own_count(tmp_path):
    lines = [{"id": "r%d" % i, "sleep": 3} for i in range(3)]
    process = upf(tmp_path, lines, np=3, wait=False, extra=["--grace", "0"])
    assert wait_until(lambda: len([e for e in read_journal(tmp_path / "out") if e.get("event") == "dispatched"]) >= 2
                      if (tmp_path / "out" / "results.jsonl").exists() else False, 90)
    process.send_signal(signal.SIGUSR1)  # forwarded to the ranks: a clean stop
    code, out, err = finish(process, timeout=60)
    assert code == 128 + signal.SIGUSR1, out + err
    again = resume(tmp_path)  # no mpiexec: one local worker
    assert again.returncode == 0, describe(again)
    assert "warning: resuming with 1 worker; the experiment started with 2 (resume it under mpiexec -n 3" \
        in again.stdout, again.stdout
    settings = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert settings["settings"]["workers"] == 2  # what the experiment started with
    assert settings["resumes"][-1]["workers"] == 1  # what the resume ran with
    same = resume(tmp_path, np=3)
    assert same.returncode == 0 and "warning: resuming" not in same.stdout, describe(same)


def test_a_half_created_experiment_can_be_started_again(tmp_path):
    out = tmp_path / "out"
    (out / "inputs").mkdir(parents=True)
    (out / "logs").mkdir()
    (out / "runs").mkdir()
    (out / ".lock").write_text("")
    (out / "results.jsonl").write_text("")  # killed after creating its files, before its settings
    refused = resume(tmp_path)
    assert refused.returncode == 2 and "start it without --resume" in refused.stderr
    result = upf(tmp_path, [{"id": "a"}])
    assert result.returncode == 0, describe(result)
    assert [r["run_id"] for r in read_records(out)] == ["a"]


def test_a_model_given_as_a_module_name_is_pinned_and_accepted_again_on_resume(tmp_path):
    """20.9: `--model faulty` (a module on PYTHONPATH), typed again on resume as the Slurm examples do."""
    on_path = {"PYTHONPATH": os.pathsep.join([ROOT, FIXTURES])}
    first = upf(tmp_path, [{"id": "a"}], model="faulty", extra_env=on_path)
    assert first.returncode == 0, describe(first)
    again = upf(tmp_path, None, model="faulty", extra=["--resume"], extra_env=on_path)
    assert again.returncode == 0, describe(again)
    settings = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert settings["settings"]["model"] == "faulty" and settings["settings"]["model_file"] == FAULTY
    by_path = upf(tmp_path, None, model=FAULTY, extra=["--resume"], extra_env=on_path)  # the same file
    assert by_path.returncode == 0, describe(by_path)
    other = upf(tmp_path, None, model="constant", extra=["--resume"], extra_env=on_path)
    assert other.returncode == 2 and "--model constant differs" in other.stderr, describe(other)


def test_accepted_changes_keep_every_version_of_the_inputs(tmp_path):
    """20.10: the refusal tells users to restore from inputs/, so --accept-changed never overwrites a copy there:
    each accepted version gets its own, and the journal says which version each run saw."""
    first = upf(tmp_path, [{"id": "a"}])
    assert first.returncode == 0, describe(first)
    original = (tmp_path / "runs.upf").read_text()
    write_upf(tmp_path / "runs.upf", [{"id": "a"}, {"id": "b"}])
    edited = (tmp_path / "runs.upf").read_text()
    accepted = resume(tmp_path, extra=["--accept-changed"])
    assert accepted.returncode == 0, describe(accepted)
    inputs = tmp_path / "out" / "inputs"
    copies = {p.name: p.read_text() for p in inputs.iterdir() if p.name.startswith("upf-")}
    assert sorted(copies.values()) == sorted([original, edited]), copies
    settings = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert settings["inputs_version"] == 2
    assert (tmp_path / "out" / settings["inputs"]["upf"]["copy"]).read_text() == edited
    seen = {run_id: e["inputs"] for e in read_journal(tmp_path / "out") if e.get("event") == "started"
            for run_id in e["run_ids"]}
    assert seen == {"a": 1, "b": 2}


def test_a_line_removed_with_accept_changed_does_not_run_and_counts_agree(tmp_path):
    """20.11: b was running at the kill and is then removed from the UPF file: it is not run on resume; the
    finished d (also removed) stays a result, and the progress, the summary and results.csv count the same runs."""
    lines = [{"id": "a"}, {"id": "d"}, {"id": "b", "sleep": 20}]
    process = upf(tmp_path, lines, wait=False)
    out = tmp_path / "out"
    try:
        assert wait_until(lambda: (out / "runs" / "b" / "model.log").exists()
                          and "fate:" in (out / "runs" / "b" / "model.log").read_text(), 60)
    finally:
        kill_group(process, signal.SIGKILL)
        process.wait(timeout=30)
    write_upf(tmp_path / "runs.upf", [{"id": "a"}, {"id": "c"}])
    again = resume(tmp_path, extra=["--accept-changed"])
    assert again.returncode == 0, describe(again)
    assert sorted(r["run_id"] for r in read_records(out)) == ["a", "c", "d"]
    assert (out / "runs" / "b" / "model.log").read_text().count("fate:") == 1  # not run again
    assert "summary: 3 runs" in again.stdout, again.stdout
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 3
    shown = re.findall(r"\[\s*(\d+)/(\d+)\]", again.stdout)
    assert shown and all(total == "3" for _, total in shown), shown
    notes = [line for line in again.stdout.splitlines() if "no longer in the UPF file" in line and "not run" in line]
    assert len(notes) == 1 and notes[0].rstrip().endswith(": b"), again.stdout


def test_the_attempts_of_a_run_are_the_jobs_it_started_in():
    """20.5: a run given to another worker within one job (its worker left) is one attempt, not two."""
    from candle_mbo.core import journal

    entries = [journal.dispatched("r1", {}), journal.dispatched("r2", {}),
               journal.started(["r1", "r2"], 1, 1, 1), journal.started(["r1"], 2, 1, 1),  # job 1, twice
               journal.started(["r1"], 1, 2, 1)]  # job 2
    replay = journal.Replay(entries)
    assert replay.attempts == {"r1": 2, "r2": 1}
    assert [e["run_id"] for e in replay.unfinished] == ["r1", "r2"]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_stop_signal_while_a_record_is_stored_counts_that_run_once(capfd, tmp_path, when):
    """The stop line is said from the signal handler, at any moment of the loop. A signal that landed while a
    result was being stored counted that run neither as finished nor as unfinished ("0 finished, 2
    interrupted" of 3 runs). Now it is unfinished until its record is written, finished from then on."""
    from candle_mbo.core.dispatch import Dispatcher, Source, Task

    class Replay:
        attempts = {}

    class Experiment:
        replay = Replay()

        def __init__(self):
            self.records = []
            self.dispatcher = None

        def append(self, record):  # the signal arrives before or after the record is written
            if when == "before":
                self.dispatcher._stop_signal(signal.SIGUSR1)
            self.records.append(record)
            if when == "after":
                self.dispatcher._stop_signal(signal.SIGUSR1)

        def file(self, name):
            return str(tmp_path / name)

    class Pool:
        def hold(self):
            pass

    class Progress:
        def update(self, record):
            pass

    experiment = Experiment()
    dispatcher = Dispatcher(Source(), Pool(), experiment, Progress(), {"resume_command": "mpiexec ... --resume"})
    experiment.dispatcher = dispatcher
    for run_id in ("r1", "r2", "r3"):
        dispatcher.tasks[run_id] = Task(run_id, {"x": 1})
    dispatcher._record({"run_id": "r1", "status": "ok", "objective": 1.0})
    said = capfd.readouterr().out
    expected = "0 finished, 3 interrupted" if when == "before" else "1 finished, 2 interrupted"
    assert expected in said and "continue with: mpiexec ... --resume" in said, said
    assert list(dispatcher.tasks) == ["r2", "r3"]
