"""Helpers shared by the benchmarks: launching jobs, reading /proc, printing tables."""

import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
RESULTS = os.path.join(ROOT, "bench", "results")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def mpi_command(np, args):
    return ["mpiexec", "-n", str(np), "--oversubscribe", PYTHON] + list(map(str, args))


def run(command, timeout=3600, env=None, check=True):
    result = subprocess.run(command, cwd=ROOT, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError("%s failed (%d):\n%s\n%s" % (" ".join(command), result.returncode, result.stdout[-3000:],
                                                      result.stderr[-3000:]))
    return result


def fresh_dir(path):
    shutil.rmtree(path, ignore_errors=True)
    return path


def records(folder):
    from candle_mbo.core.store import load_results

    return load_results(os.path.join(folder, "results.jsonl"))


def stat_fields(pid):
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [3] session, ..."""
    with open("/proc/%s/stat" % pid) as handle:
        return handle.read().rsplit(")", 1)[1].split()


def all_stats():
    """(pid, stat_fields) of every process that still exists."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                yield int(name), stat_fields(name)
            except OSError:
                continue


def session_pids(leader):
    return [pid for pid, fields in all_stats() if int(fields[3]) == leader and fields[0] != "Z"]


def children_of(parents):
    return [pid for pid, fields in all_stats() if int(fields[1]) in parents]


def cpu_seconds(pid):
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def environ_value(pid, name):
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            for item in handle.read().split(b"\0"):
                if item.startswith(name.encode() + b"="):
                    return item.split(b"=", 1)[1].decode()
    except OSError:
        pass
    return None


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def maps_contain(pid, needle):
    try:
        with open("/proc/%d/maps" % pid) as handle:
            return needle in handle.read()
    except OSError:
        return False


def table(headers, rows):
    """A Markdown table (printed and pasted into docs/performance.md)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in rows]
    return "\n".join(lines)


def save(name, data, text):
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name + ".json"), "w") as handle:
        json.dump(data, handle, indent=1)
    with open(os.path.join(RESULTS, name + ".md"), "w") as handle:
        handle.write(text + "\n")
    print(text)
    print()


def machine():
    return "%d cores, %s, %s" % (os.cpu_count(), time.strftime("%Y-%m-%d"), os.uname().release)
