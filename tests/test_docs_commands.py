"""Every shell command in README.md and docs/user-guide.md runs as written.

The commands are taken from the fenced code blocks marked ``sh``, ``bash``, ``shell`` or ``console``
(console blocks: the lines after a ``$`` prompt), in document order, README first, and run one by
one with bash in a fresh copy of the project (no .venv, no setup stamp: the quick start's
``make demo`` sets it up as on a new machine). A reader's shell keeps what they pasted before, so
``export``, ``.``/``source`` and ``cd`` lines carry over to the commands after them. The test's
own Open MPI variables are removed from the environment, so the README has to provide them.

Commands that cannot run here are listed in NOT_RUN with the reason; every other command must exit 0.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, kill_group

DOCS = ("README.md", os.path.join("docs", "user-guide.md"))
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "shell-session", "zsh"}
COMMAND_TIMEOUT = 900

# (pattern the command matches, why it is not run here). Everything else in the docs' shell blocks runs.
NOT_RUN = [
    # placeholders and network: the test already runs on a copy of the repository
    (r"^git clone ", "clones this repository from a placeholder URL (network); the test runs on a copy instead"),
    # would run this very test again, inside itself
    (r"^make test\b", "runs the whole test suite, which contains this test"),
    (r"^make bench\b", "the benchmarks take an hour; bench/ has its own checks"),
    # other installers and schedulers that this Debian machine does not have
    (r"^conda ", "conda is not installed here (Debian packages only)"),
    (r"^pip install ", "the last step of the conda setup: it installs into the conda environment of the lines "
                      "before, which cannot exist here"),
    (r"^(sbatch|qsub|srun|salloc|bsub|jsrun|aprun) ", "a batch scheduler (Slurm, PBS, LSF, ...) is not available here"),
    # illustrations of the command shape with files that stand for the user's own
    (r"--model model\.py\b", "illustrates the command shape: model.py, space.R and runs.upf stand for the user's files"),
]

_MPI_VARIABLES = ("OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMPI_MCA_rmaps_base_oversubscribe")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_STATE = re.compile(r"^(export\s|\.\s|source\s|cd\s)")


class Command:
    def __init__(self, path, line, text):
        self.path, self.line, self.text = path, line, text

    def __repr__(self):
        return "%s:%d: %s" % (self.path, self.line, self.text)


def code_blocks(text):
    """(language, first line number, lines) of every fenced code block of a Markdown text.

    Follows CommonMark: a fence is 3+ backticks or tildes, indented up to 3 spaces (more inside list
    items, whose indentation is stripped from the block's lines), closed by a fence of the same
    character at least as long; an unclosed block runs to the end of the text.
    """
    blocks, current = [], None
    for number, line in enumerate(text.splitlines(), start=1):
        match = _FENCE.match(line)
        if current is None:
            if match and not (match.group("fence")[0] == "`" and "`" in match.group("info")):
                info = match.group("info").strip()
                language = info.split()[0].lower().strip("{}.") if info else ""
                current = (language, number + 1, match.group("indent"), match.group("fence"), [])
            continue
        language, first, indent, fence, lines = current
        if match and match.group("fence")[0] == fence[0] and len(match.group("fence")) >= len(fence) \
                and not match.group("info").strip():
            blocks.append((language, first, lines))
            current = None
            continue
        lines.append(line[len(indent):] if line.startswith(indent) else line.lstrip())
    if current is not None:
        blocks.append((current[0], current[1], current[4]))
    return blocks


def commands(path, text):
    """The shell commands of a Markdown text, continuation lines joined, comments and blank lines left out."""
    found = []
    for language, first, lines in code_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        prompt = language in ("console", "shell-session")
        pending, start = None, None
        for offset, raw in enumerate(lines):
            line = raw.rstrip()
            if pending is None:
                line = line.lstrip()
                if prompt:
                    if not line.startswith("$ "):
                        continue  # output shown after a command
                    line = line[2:]
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                pending, start = "", first + offset
            if line.endswith("\\"):
                pending += line[:-1].rstrip() + " "
                continue
            pending += line.strip()
            found.append(Command(path, start, pending))
            pending = None
        if pending:
            found.append(Command(path, start, pending.strip()))
    return found


def skip_reason(command):
    for pattern, reason in NOT_RUN:
        if re.search(pattern, command.text):
            return reason
    return None


def all_commands():
    found = []
    for name in DOCS:
        with open(os.path.join(ROOT, name), encoding="utf-8") as handle:
            found += commands(name, handle.read())
    return found


# -- the extractor ---------------------------------------------------------------------------------
def test_the_extractor_reads_fences_prompts_continuations_and_comments():
    text = "\n".join([
        "Intro `inline code` is not a command.",
        "```sh",
        "make demo    # a trailing comment stays (bash drops it)",
        "# a comment line",
        "",
        "mpiexec -n 2 python -m candle_mbo \\",
        "    --budget 3",
        "```",
        "```python",
        "import candle",
        "```",
        "1. In a list:",
        "   ```bash",
        "   export A=1",
        "   ```",
        "~~~~console",
        "$ echo one",
        "one",
        "```",
        "$ echo two",
        "~~~~",
        "```",
        "plain block, not shell",
        "```",
        "```  Shell  {title=x}",
        "ls",
    ])
    found = [(c.line, c.text) for c in commands("doc.md", text)]
    assert found == [(3, "make demo    # a trailing comment stays (bash drops it)"),
                     (6, "mpiexec -n 2 python -m candle_mbo --budget 3"),
                     (14, "export A=1"), (17, "echo one"), (20, "echo two"), (26, "ls")]


def test_every_documented_command_is_run_or_listed_with_a_reason():
    found = all_commands()
    assert any(c.path == "README.md" for c in found) and any(c.path != "README.md" for c in found)
    state = [c for c in found if _STATE.match(c.text)]
    assert any(c.text.startswith("export ") and all(v in c.text for v in _MPI_VARIABLES) for c in state), \
        "the README must give the Open MPI variables as one export line"
    for command in found:
        reason = skip_reason(command)
        assert reason is None or len(reason) > 20, command


# -- running them ----------------------------------------------------------------------------------
def copy_project(target):
    """The project's files as a fresh checkout has them (no .venv, no setup stamp, no experiments)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        shutil.copytree(ROOT, target, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "experiments", "__pycache__", ".pytest_cache", ".setup-stamp", "*.egg-info"))
        return
    for name in filter(None, listed):
        source = os.path.join(ROOT, name)
        if not os.path.lexists(source):
            continue  # deleted in the working tree, not yet committed
        os.makedirs(os.path.dirname(os.path.join(target, name)), exist_ok=True)
        shutil.copy2(source, os.path.join(target, name), follow_symlinks=False)


def run_in_shell(prelude, command, cwd, env, timeout):
    script = "set -e -o pipefail\n%s\n%s\n" % ("\n".join(prelude), command)
    process = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(process)
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def _without_comment(text):
    """A command without its trailing comment (for spotting the same command twice; quotes are not parsed)."""
    return re.split(r"\s+#\s", text, maxsplit=1)[0].strip()


def check_output(command, output):
    """Problems in the output of a command that exited 0."""
    problems = []
    ranks = re.match(r"^mpiexec -n (\d+) ", command.text)
    if ranks and re.search(r"-m candle_mbo(\.upf)?\b", command.text) and "--help" not in command.text:
        workers = int(ranks.group(1)) - 1
        if not re.search(r"\b%d workers?\b" % workers, output):  # a resume keeps its workers, for one
            problems.append("expected %d workers" % workers)
    if re.search(r"^error: ", output, re.M):
        problems.append("an error line")
    return problems


@pytest.mark.slow
def test_the_documented_commands_run_as_written(tmp_path):
    project = tmp_path / "candle_mbo"
    copy_project(str(project))
    env = {k: v for k, v in os.environ.items()
           if k not in _MPI_VARIABLES and k not in ("VIRTUAL_ENV", "PYTHONPATH", "MAKEFLAGS", "MAKELEVEL")}
    venv_bin = os.path.join(ROOT, ".venv", "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    prelude, failures, report, done = [], [], [], set()
    for command in all_commands():
        reason = skip_reason(command)
        if not reason and (tuple(prelude), _without_comment(command.text)) in done:
            reason = "the same command ran above"
        if reason:
            report.append("not run  %r: %s" % (command, reason))
            continue
        done.add((tuple(prelude), _without_comment(command.text)))
        started = time.time()
        code, output = run_in_shell(prelude, command.text, str(project), env, COMMAND_TIMEOUT)
        report.append("ran (%3.0f s, exit %s)  %r" % (time.time() - started, code, command))
        problems = ["exit %s" % code] if code != 0 else check_output(command, output)
        if problems:
            failures.append("%r: %s\n%s" % (command, ", ".join(problems), output[-3000:]))
        if _STATE.match(command.text):
            prelude.append(command.text)
    print("\n".join(report))
    assert not failures, "\n\n".join(failures)
