"""Coexistence with candle_lib: installing candle_mbo never overwrites or shadows another ``candle``.

Each test builds candle_mbo (a wheel, or an editable install) from a copy of the project into a fresh
``venv --system-site-packages``, with and without a stand-in ``candle`` distribution built here (a small
candle_lib look-alike). Installs use pip with ``--no-build-isolation --no-deps --no-index``.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest
from conftest import mlrmbo, read_records  # noqa: F401 - mlrmbo: the fixture (skips without R packages)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow

STANDIN_INIT = '''
"""A stand-in for candle_lib: the same shape of API, parsing on its own, knowing nothing of candle_mbo."""
import argparse, ast, configparser, os, sys

STANDIN = True


def str2bool(text):
    return str(text).lower() in ("yes", "true", "t", "y", "1")


class Benchmark:
    def __init__(self, filepath, defmodel, framework, prog=None, desc=None, parser=None,
                 additional_definitions=None, required=None):
        if os.getenv("CANDLE_DATA_DIR") is None:  # as candle_lib does
            raise Exception("You must define CANDLE_DATA_DIR")
        self.file_path, self.default_model = filepath, defmodel
        self.required = set(required or [])
        self.additional_definitions = additional_definitions or []
        self.set_locals()

    def set_locals(self):
        pass


def finalize_parameters(bmk):
    config = configparser.ConfigParser()
    config.read(os.path.join(bmk.file_path, bmk.default_model))
    params = {}
    for section in config.sections():
        for key, value in config.items(section):
            params.setdefault(key, ast.literal_eval(value))
    parser = argparse.ArgumentParser()
    for d in bmk.additional_definitions:
        parser.add_argument("--" + d["name"], type=d.get("type"), nargs=d.get("nargs"),
                            default=argparse.SUPPRESS)
    params.update(vars(parser.parse_args(sys.argv[1:])))
    params.setdefault("experiment_id", "EXP000")
    params.setdefault("run_id", "RUN000")
    params["output_dir"] = os.path.join(os.environ["CANDLE_DATA_DIR"], params["model_name"], "Output",
                                        params["experiment_id"], params["run_id"])
    os.makedirs(params["output_dir"], exist_ok=True)
    params["parsed_by"] = "standin"
    missing = bmk.required - set(params)
    if missing:
        raise Exception("required parameters missing: %s" % sorted(missing))
    return params
'''

MODEL = '''
"""A benchmark written for candle_lib: it records which candle it got and what run() received."""
import json, os
import candle

HERE = os.path.dirname(os.path.abspath(__file__))


class Bench(candle.Benchmark):
    def set_locals(self):
        self.required = {"epochs", "dense"}
        self.additional_definitions = [{"name": "dense", "type": int, "nargs": "+"},
                                       {"name": "epochs", "type": int}, {"name": "learning_rate", "type": float}]


def initialize_parameters():
    return candle.finalize_parameters(Bench(HERE, "bench_default_model.txt", "none", prog="bench"))


def run(params):
    with open(os.path.join(params["output_dir"], "seen.json"), "w") as handle:
        json.dump({"candle": getattr(candle, "__name__", "?"), "standin": getattr(candle, "STANDIN", False),
                   "params": {k: params[k] for k in ("dense", "epochs", "learning_rate", "parsed_by")
                              if k in params}}, handle)
    return {"val_loss": [float(params["learning_rate"]) * params["epochs"] + len(params["dense"])]}
'''

DEFAULTS = "[Global_Params]\nmodel_name = 'bench'\ndense = [16, 8, 4]\nepochs = 5\nlearning_rate = 0.1\n"


def _run(command, cwd=None, env=None, timeout=300):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, "%s\nexit %s\n%s\n%s" % (" ".join(map(str, command)), result.returncode,
                                                          result.stdout[-3000:], result.stderr[-3000:])
    return result


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CANDLE_DATA_DIR", "PYTHONHOME")}
    env.update(extra)
    return env


def _pip(python, *args):
    return _run([python, "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-build-isolation",
                 "--no-deps", "--no-index"] + [str(a) for a in args], env=_clean_env())


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A copy of the project (what an sdist holds) and a stand-in candle project, plus their wheels."""
    root = tmp_path_factory.mktemp("candle-install")
    project = root / "candle_mbo_src"
    project.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(os.path.join(REPO, name), project / name)
    for folder in ("candle_mbo", "R"):
        shutil.copytree(os.path.join(REPO, folder), project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    standin = root / "standin_src"
    (standin / "candle").mkdir(parents=True)
    (standin / "candle" / "__init__.py").write_text(STANDIN_INIT)
    (standin / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "candle"
        version = "0.0.1+standin"
        [tool.setuptools]
        packages = ["candle"]
        '''))
    wheels = root / "wheels"
    for folder in (project, standin):
        _run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel", "--no-build-isolation",
              "--no-deps", "--no-index", "-w", str(wheels), str(folder)], env=_clean_env())
    found = {name.split("-")[0]: wheels / name for name in os.listdir(wheels)}
    bench = root / "bench"
    bench.mkdir()
    (bench / "bench.py").write_text(MODEL)
    (bench / "bench_default_model.txt").write_text(DEFAULTS)
    return {"project": project, "standin_wheel": found["candle"], "wheel": found["candle_mbo"], "bench": bench,
            "root": root}


def _venv(path):
    _run(["/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable, "-m", "venv",
          "--system-site-packages", "--without-pip", str(path)])
    return str(path / "bin" / "python")


def _which_candle(python, cwd):
    code = "import candle, json; print(json.dumps([candle.__name__, getattr(candle, 'STANDIN', False), candle.__file__]))"
    return json.loads(_run([python, "-c", code], cwd=cwd, env=_clean_env()).stdout.strip().splitlines()[-1])


def test_wheel_holds_no_candle_package_and_registers_the_finder(sources):
    with zipfile.ZipFile(sources["wheel"]) as wheel:
        names = wheel.namelist()
        pth = wheel.read("candle_mbo.pth").decode()
    assert not [n for n in names if n.startswith("candle/")]
    assert "candle_mbo/candle_api/__init__.py" in names and "candle_mbo/candle_finder.py" in names
    assert "register()" in pth and pth.startswith("import ")


def test_wheel_alone_answers_import_candle(sources, tmp_path):
    python = _venv(tmp_path / "venv")
    _pip(python, sources["wheel"])
    name, standin, _ = _which_candle(python, tmp_path)
    assert (name, standin) == ("candle_mbo.candle_api", False)
    # a standalone script written for candle_lib runs unchanged with candle_mbo's layer
    _run([python, "-c", "import sys; sys.path.insert(0, %r); import bench; p = bench.initialize_parameters(); "
                        "assert p['dense'] == [16, 8, 4]" % str(sources["bench"])],
         cwd=tmp_path, env=_clean_env(CANDLE_DATA_DIR=str(tmp_path / "data")))


@pytest.mark.parametrize("order", ["candle_lib first", "candle_mbo first"])
def test_wheel_beside_candle_lib_leaves_it_alone(sources, tmp_path, order):
    python = _venv(tmp_path / "venv")
    first, second = sources["standin_wheel"], sources["wheel"]
    if order == "candle_mbo first":
        first, second = second, first
    _pip(python, first)
    _pip(python, second)
    name, standin, path = _which_candle(python, tmp_path)
    assert (name, standin) == ("candle", True)
    with zipfile.ZipFile(sources["standin_wheel"]) as wheel:
        assert open(path).read() == wheel.read("candle/__init__.py").decode()  # not overwritten


def test_editable_install_with_and_without_candle_lib(sources, tmp_path):
    python = _venv(tmp_path / "venv")
    project = tmp_path / "project"
    shutil.copytree(sources["project"], project)
    _pip(python, "-e", project)
    site = [p for p in (tmp_path / "venv" / "lib").glob("python*/site-packages")][0]
    assert (site / "candle_mbo.pth").exists() and not (site / "candle").exists()
    name, _, path = _which_candle(python, tmp_path)
    assert name == "candle_mbo.candle_api" and path.startswith(str(project))
    _pip(python, sources["standin_wheel"])
    name, standin, _ = _which_candle(python, tmp_path)
    assert (name, standin) == ("candle", True)


def test_a_stray_candle_folder_does_not_hide_the_layer(sources, tmp_path):
    """A folder named candle without __init__.py (e.g. __pycache__ left by an old checkout) is a namespace
    package, not candle_lib: import candle still gets candle_mbo's layer."""
    python = _venv(tmp_path / "venv")
    _pip(python, sources["wheel"])
    (tmp_path / "candle" / "__pycache__").mkdir(parents=True)
    name, _, _ = _which_candle(python, tmp_path)
    assert name == "candle_mbo.candle_api"


def _upf(python, sources, tmp_path, env):
    upf = tmp_path / "runs.upf"
    upf.write_text('{"id": "a", "epochs": 2, "dense": "[8, 4]", "learning_rate": 1}\n{"id": "b", "dense": 32}\n')
    out = tmp_path / "out"
    _run([python, "-m", "candle_mbo.upf", "--model", str(sources["bench"] / "bench.py"), "--upf", str(upf),
          "--output", str(out), "--no-report"], cwd=tmp_path, env=env, timeout=300)
    seen = {run: json.loads((out / "runs" / run / "seen.json").read_text()) for run in ("a", "b")}
    records = read_records(out)
    assert sorted(r["status"] for r in records) == ["ok", "ok"], records
    return seen


def test_workflow_runs_candle_lib_models_with_candle_lib(sources, tmp_path):
    """With candle_lib installed, the workers' `import candle` is candle_lib; the run's values reach run() on
    top of what candle_lib's initialize_parameters() returned, as Supervisor's model runner gives them."""
    python = _venv(tmp_path / "venv")
    _pip(python, sources["standin_wheel"])
    _pip(python, sources["wheel"])
    seen = _upf(python, sources, tmp_path, _clean_env(CANDLE_DATA_DIR=str(tmp_path / "data")))
    assert seen["a"]["candle"] == "candle" and seen["a"]["standin"] is True
    assert seen["a"]["params"] == {"dense": [8, 4], "epochs": 2, "learning_rate": 1.0, "parsed_by": "standin"}
    assert seen["b"]["params"] == {"dense": [32], "epochs": 5, "learning_rate": 0.1, "parsed_by": "standin"}


def test_workflow_without_install_uses_the_layer(sources, tmp_path):
    """PYTHONPATH only (no install, no .pth): the runner registers the finder itself."""
    python = _venv(tmp_path / "venv")
    seen = _upf(python, sources, tmp_path, _clean_env(PYTHONPATH=str(sources["project"])))
    assert seen["a"]["candle"] == "candle_mbo.candle_api" and seen["a"]["standin"] is False
    assert seen["a"]["params"] == {"dense": [8, 4], "epochs": 2, "learning_rate": 1.0}
    assert seen["b"]["params"] == {"dense": [32], "epochs": 5, "learning_rate": 0.1}


@pytest.mark.r
def test_hpo_runs_candle_lib_models_with_candle_lib(sources, tmp_path, mlrmbo):
    # A built wheel: it carries the R code as data files (share/candle_mbo/R), which candle_mbo.search.mbo finds.
    python = _venv(tmp_path / "venv")
    _pip(python, sources["standin_wheel"])
    _pip(python, sources["wheel"])
    space = tmp_path / "space.R"
    space.write_text('param.set <- makeParamSet(makeNumericParam("learning_rate", lower = 0.01, upper = 1),\n'
                     '  makeDiscreteParam("dense", values = c("[8, 4]", "16 8", "32")))\n')
    out = tmp_path / "out"
    _run([python, "-m", "candle_mbo", "--model", str(sources["bench"] / "bench.py"), "--space", str(space),
          "--budget", "4", "--design-size", "3", "--seed", "1", "--output", str(out), "--no-report"], cwd=tmp_path,
         env=_clean_env(CANDLE_DATA_DIR=str(tmp_path / "data")), timeout=300)
    records = read_records(out)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records), records
    for record in records:
        seen = json.loads((out / "runs" / record["run_id"] / "seen.json").read_text())
        assert seen["standin"] is True and seen["params"]["parsed_by"] == "standin"
        assert seen["params"]["dense"] in ([8, 4], [16, 8], [32]) and isinstance(seen["params"]["learning_rate"], float)
