"""The cluster material in examples/hpc/ and the conda environment files: scripts that a site fills in and
submits, checked here without a scheduler.

Every script must parse (``bash -n``); its dry run (``CANDLE_MBO_DRY_RUN=1``) must print the launch line
it would run, with the layout its node-shape variables make and options candle_mbo accepts; its #SBATCH
/#PBS lines must agree with those variables and stop cleanly before the walltime by default. The Slurm
UPF script also runs for real, with stand-ins for srun (mpiexec), conda and scontrol on the PATH: to its
end, and stopped by USR1 as the walltime signal would stop it, then requeued and resumed.
"""

import glob
import json
import os
import re
import shlex
import signal
import subprocess
import time

import pytest
import yaml

from conftest import MPI_ENV, PYTHON, ROOT, kill_group, read_journal, read_records, requires_mpi, write_upf
from candle_mbo import hpo, upf

HPC = os.path.join(ROOT, "examples", "hpc")
SCRIPTS = sorted(glob.glob(os.path.join(HPC, "*.sh")))
JOBS = {"slurm_hpo.sh": "srun", "slurm_upf.sh": "srun", "slurm_hpo_hetjob.sh": "srun", "pbs_hpo.sh": "mpiexec"}


def dry_run(name, cwd=ROOT, **variables):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env.update(CANDLE_MBO_DRY_RUN="1", PATH="/usr/bin:/bin")  # no srun, conda or module here: nothing may run
    env.update({k: str(v) for k, v in variables.items()})
    return subprocess.run(["bash", os.path.join(HPC, name)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def launch_line(result, launcher):
    lines = [line for line in result.stdout.splitlines() if line.startswith(launcher + " ")]
    assert len(lines) == 1, result.stdout + result.stderr
    return shlex.split(lines[0])


def options(words, name):
    """The values of ``--name=value`` words."""
    return [w.split("=", 1)[1] for w in words if w.startswith("--%s=" % name)]


def candle_mbo_args(words):
    """``[(module, arguments)]`` of each ``python -m candle_mbo[.upf]`` of a launch line (one per component)."""
    found = []
    for index, word in enumerate(words):
        if word == "python" and words[index + 1:index + 2] == ["-m"]:
            end = words.index(":", index) if ":" in words[index:] else len(words)
            found.append((words[index + 2], words[index + 3:end]))
    return found


def directives(name, prefix):
    with open(os.path.join(HPC, name), encoding="utf-8") as handle:
        return [line.split(None, 1)[1].strip() for line in handle if line.startswith(prefix + " ")]


def default(name, variable):
    """The default a script gives ``variable`` (``NAME=${NAME:-default}`` or ``NAME=${SLURM_X:-default}``)."""
    with open(os.path.join(HPC, name), encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(r"^%s=\$\{[A-Z_0-9]+:-([^}]*)\}" % variable, text, re.M)
    assert match, (name, variable)
    return match.group(1).strip('"')


# -- every script ----------------------------------------------------------------------------------
def test_the_scripts_are_the_ones_documented():
    names = {os.path.basename(s) for s in SCRIPTS}
    assert names == set(JOBS) | {"make_conda_env.sh"}
    with open(os.path.join(HPC, "README.md"), encoding="utf-8") as handle:
        readme = handle.read()
    for name in names:
        assert name in readme, name


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_each_script_parses_and_its_blanks_and_node_shape_come_first(script):
    name = os.path.basename(script)
    check = subprocess.run(["bash", "-n", script], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    assert os.access(script, os.X_OK)
    with open(script, encoding="utf-8") as handle:
        text = handle.read()
    head = text.split("# ---- nothing to fill in below")[0]
    assert "nothing to fill in below" in text and "FILL IN" in head
    assert 'SITE_MODULES=${SITE_MODULES:-"FILL_IN_' in head  # the module lines to fill in
    if name != "make_conda_env.sh":
        for variable in ("CORES_PER_NODE", "GPUS_PER_NODE", "GPUS_PER_WORKER"):
            assert re.search(r"^%s=" % variable, head, re.M), (name, variable)


@pytest.mark.parametrize("name", sorted(JOBS))
def test_the_dry_run_prints_the_launch_line_with_options_candle_mbo_accepts(name, tmp_path):
    result = dry_run(name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "module load FILL_IN_MPI_MODULE" in result.stdout and "conda activate candle_mbo" in result.stdout
    words = launch_line(result, JOBS[name])
    components = candle_mbo_args(words)
    assert components and all(args == components[0][1] for _, args in components)  # every component alike
    for module, args in components:
        parser = (upf if module == "candle_mbo.upf" else hpo).build_parser()
        parsed = parser.parse_args(args)  # every option exists and takes its value
        assert parsed.grace > 0 and parsed.output.startswith("experiments/") and not parsed.resume
    # the node shape decides the layout
    if name == "slurm_hpo.sh":
        assert options(words, "nodes") == ["2"] and options(words, "ntasks") == ["8"]
        assert options(words, "ntasks-per-node") == ["4"] and options(words, "cpus-per-task") == ["16"]
        assert "--threads-per-worker" in words and words[words.index("--threads-per-worker") + 1] == "16"
        shaped = launch_line(dry_run(name, GPUS_PER_WORKER=2, CORES_PER_NODE=32), "srun")
        assert options(shaped, "ntasks") == ["4"] and options(shaped, "cpus-per-task") == ["16"]
        assert shaped[shaped.index("--gpus-per-worker") + 1] == "2"
        cpu = launch_line(dry_run(name, GPUS_PER_NODE=0, CORES_PER_WORKER=16), "srun")
        assert options(cpu, "ntasks-per-node") == ["4"] and not options(cpu, "gpus-per-node")
        assert cpu[cpu.index("--gpus-per-worker") + 1] == "0"
    if name == "slurm_hpo_hetjob.sh":
        assert words.count(":") == 1 and options(words, "het-group") == ["0", "1"]
        assert options(words, "ntasks") == ["1", "8"] and options(words, "gpus-per-node") == ["4"]
        assert components[0][1][components[0][1].index("--masters") + 1] == "1"
    if name == "pbs_hpo.sh":
        assert words[:3] == ["mpiexec", "-n", "8"]
        hosts = launch_line(dry_run(name, HOSTS_OPTION="--hostfile", PBS_NODEFILE=""), "mpiexec")
        assert hosts[3] == "--hostfile"


@pytest.mark.parametrize("name", sorted(JOBS))
def test_an_existing_experiment_is_resumed_and_a_bad_shape_refused(name, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "experiment.yaml").write_text("kind: hpo\n")
    resumed = dry_run(name, OUT=str(out))
    assert resumed.returncode == 0 and "resuming it" in resumed.stdout
    assert launch_line(resumed, JOBS[name])[-1] == "--resume"
    refused = dry_run(name, GPUS_PER_WORKER=3)
    assert refused.returncode == 2 and "GPUS_PER_NODE=4 is not a multiple of GPUS_PER_WORKER=3" in refused.stderr
    refused = dry_run(name, CORES_PER_NODE="sixty")
    assert refused.returncode == 2 and "CORES_PER_NODE=sixty must be a whole number" in refused.stderr


def test_the_batch_lines_agree_with_the_node_shape_and_stop_cleanly_before_the_walltime():
    for name in ("slurm_hpo.sh", "slurm_upf.sh"):
        lines = directives(name, "#SBATCH")
        assert "--account=FILL_IN_ACCOUNT" in lines and "--partition=FILL_IN_GPU_PARTITION" in lines
        assert "--nodes=%s" % default(name, "NODES") in lines
        assert "--gpus-per-node=%s" % default(name, "GPUS_PER_NODE") in lines
        lead = int(next(line for line in lines if line.startswith("--signal=B:USR1@")).split("@")[1])
        assert "--requeue" in lines and int(default(name, "GRACE")) < lead  # on by default, not commented out
    het = directives("slurm_hpo_hetjob.sh", "#SBATCH")
    first, second = het[:het.index("hetjob")], het[het.index("hetjob") + 1:]
    assert "--partition=FILL_IN_CPU_PARTITION" in first and "--partition=FILL_IN_GPU_PARTITION" in second
    assert "--account=FILL_IN_ACCOUNT" in first and "--account=FILL_IN_ACCOUNT" in second
    assert "--ntasks=%s" % default("slurm_hpo_hetjob.sh", "MASTERS") in first
    assert "--cpus-per-task=%s" % default("slurm_hpo_hetjob.sh", "CORES_PER_MASTER") in first
    assert "--nodes=%s" % default("slurm_hpo_hetjob.sh", "GPU_NODES") in second
    assert "--gpus-per-node=%s" % default("slurm_hpo_hetjob.sh", "GPUS_PER_NODE") in second
    assert "--signal=B:USR1@300" in first and "--requeue" in first
    pbs = directives("pbs_hpo.sh", "#PBS")
    assert "-A FILL_IN_ACCOUNT" in pbs and "-q FILL_IN_GPU_QUEUE" in pbs
    select = next(line for line in pbs if line.startswith("-l select="))
    shape = dict(part.split("=") for part in select.split("select=")[1].split(":")[1:])
    assert select.split("select=")[1].split(":")[0] == default("pbs_hpo.sh", "NODES")
    assert shape["ncpus"] == default("pbs_hpo.sh", "CORES_PER_NODE")
    assert shape["ngpus"] == default("pbs_hpo.sh", "GPUS_PER_NODE")
    assert int(shape["mpiprocs"]) == int(shape["ngpus"]) // int(default("pbs_hpo.sh", "GPUS_PER_WORKER"))
    assert "-l walltime=%s" % default("pbs_hpo.sh", "WALLTIME") in pbs
    assert int(default("pbs_hpo.sh", "GRACE")) < int(default("pbs_hpo.sh", "STOP_BEFORE"))
    assert default("pbs_hpo.sh", "CONTINUE") == "1"


def test_the_environment_recipe_uses_the_site_mpi_and_the_nodes_cuda():
    result = dry_run("make_conda_env.sh")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "export CONDA_OVERRIDE_CUDA=12.4" in lines
    assert "conda env create -n candle_mbo -f environment.yml" in lines
    assert shlex.split(next(line for line in lines if line.startswith("conda install")))[-2:] == \
        ["openmpi=4.1.*=external_*", "mpi4py"]
    tf = dry_run("make_conda_env.sh", FRAMEWORK="tensorflow", MPI_FAMILY="mpich", MPI_VERSION="4.0",
                 MPI_RECIPE="build", CUDA_VERSION="")
    assert tf.returncode == 0, tf.stderr
    assert "conda env create -n candle_mbo_tf -f environment-tf.yml" in tf.stdout
    assert "CONDA_OVERRIDE_CUDA" not in tf.stdout and "--no-binary=mpi4py" in tf.stdout
    assert dry_run("make_conda_env.sh", FRAMEWORK="jax").returncode == 2


def test_the_conda_environments_split_by_framework():
    files = {}
    for name in ("environment.yml", "environment-tf.yml"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
            text = handle.read()
        assert "CONDA_OVERRIDE_CUDA=" in text and "make_conda_env.sh" in text
        files[name] = yaml.safe_load(text)
    torch, tf = files["environment.yml"], files["environment-tf.yml"]
    assert torch["name"] != tf["name"]
    assert "pytorch" in torch["dependencies"] and "tensorflow" not in torch["dependencies"]
    assert "tensorflow" in tf["dependencies"] and "pytorch" not in tf["dependencies"]
    shared = set(torch["dependencies"]) & set(tf["dependencies"])
    for needed in ("jinja2", "matplotlib", "mpi4py", "rpy2", "r-mlrmbo>=1.1.5", "pyyaml"):
        assert needed in shared, needed


# -- the Slurm UPF script for real, with stand-ins for the scheduler's commands ------------------------
STAND_INS = {
    # srun: the options before the command give the ranks; Open MPI's mpiexec runs them (and forwards USR1)
    "srun": """#!/bin/bash
n=1
while [ $# -gt 0 ] && [ "$1" != python ]; do case "$1" in --ntasks=*) n=${1#--ntasks=} ;; esac; shift; done
exec mpiexec -n "$n" --oversubscribe "$@"
""",
    "scontrol": """#!/bin/bash
echo "$*" >> "$STAND_IN_LOG"
""",
    "conda": """#!/bin/bash
[ "$1 $2" = "info --base" ] && echo "$STAND_IN_CONDA"
""",
}


@pytest.fixture
def site(tmp_path):
    """A PATH with srun, scontrol and conda stand-ins and ``python`` = this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STAND_INS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    os.symlink(PYTHON, bin_dir / "python")
    conda = tmp_path / "conda" / "etc" / "profile.d"
    conda.mkdir(parents=True)
    (conda / "conda.sh").write_text("conda() { echo \"conda $*\"; }\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env.update(MPI_ENV)
    env.update(PATH="%s:%s" % (bin_dir, env["PATH"]), STAND_IN_LOG=str(tmp_path / "scontrol.log"),
               STAND_IN_CONDA=str(tmp_path / "conda"), PYTHONPATH=ROOT, SITE_MODULES="none", SLURM_JOB_ID="4242",
               SLURM_SUBMIT_DIR=ROOT, NODES="1", GPUS_PER_NODE="0", CORES_PER_NODE="3", CORES_PER_WORKER="1",
               MODEL=os.path.join(ROOT, "examples", "quadratic", "quadratic_baseline.py"))
    return env


def run_script(env, timeout=240, wait=True):
    process = subprocess.Popen(["bash", os.path.join(HPC, "slurm_upf.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if not wait:
        return process
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        raise
    return process.returncode, out


@requires_mpi
def test_the_slurm_upf_script_runs_a_job_to_its_end(site, tmp_path):
    env = dict(site, OUT=str(tmp_path / "out"), UPF=os.path.join(ROOT, "upf", "quadratic.upf"))
    code, out = run_script(env)
    assert code == 0, out
    assert "conda activate candle_mbo" in out and "the dispatcher + 2 workers" in out
    assert len(read_records(tmp_path / "out")) == 4  # the lines of upf/quadratic.upf
    assert not os.path.exists(env["STAND_IN_LOG"])  # no requeue


@requires_mpi
def test_the_walltime_signal_stops_the_job_cleanly_then_it_requeues_and_resumes(site, tmp_path):
    lines = [{"id": "r%d" % i, "x": i, "sleep": 4} for i in range(6)]
    env = dict(site, OUT=str(tmp_path / "out"), UPF=write_upf(tmp_path / "runs.upf", lines), GRACE="60")
    process = run_script(env, wait=False)
    try:
        journal = tmp_path / "out" / "results.jsonl"
        deadline = time.time() + 120
        while time.time() < deadline and not (journal.exists() and sum(
                e.get("event") == "dispatched" for e in read_journal(tmp_path / "out")) >= 2):
            time.sleep(0.2)
        process.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@300 sends the batch script
        out, _ = process.communicate(timeout=120)
    finally:
        kill_group(process)
    assert "walltime near: stopping the runs cleanly, then requeueing job 4242" in out, out
    with open(env["STAND_IN_LOG"]) as handle:
        assert handle.read().split() == ["requeue", "4242"]
    records = read_records(tmp_path / "out")
    assert 2 <= len(records) < 6 and all(r["status"] == "ok" for r in records)  # the running runs finished (--grace)
    settings = yaml.safe_load((tmp_path / "out" / "experiment.yaml").read_text())
    assert (settings["exit_code"], settings["stopped_by"]) == (138, "SIGUSR1")
    os.unlink(env["STAND_IN_LOG"])
    code, again = run_script(env)  # the requeued job: the same script, the same $OUT
    assert code == 0 and "resuming it" in again, again
    assert sorted(r["run_id"] for r in read_records(tmp_path / "out")) == ["r%d" % i for i in range(6)]
    assert json.loads((tmp_path / "out" / "best.json").read_text())["run_id"] == "r1"
