"""Run every benchmark in turn (make bench). Each prints its table and saves it under bench/results/.

    python bench/run_all.py [--quick]

--quick: smaller sizes (a sanity run, figures not for docs/performance.md).
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    quick = "--quick" in sys.argv
    steps = [
        ["pool_bench.py"] + (["--tasks", "2000", "--ranks", "4"] if quick else []),
        ["bridge_bench.py"] + (["--rounds", "4", "--repeats", "1", "--sizes", "50", "100"] if quick else []),
        ["async_bench.py"] + (["--budget", "24"] if quick else []),
        ["quality_bench.py"] + (["--seeds", "1", "--problems", "branin"] if quick else []),
        ["proposal_bench.py", "latency"] + (["--sizes", "100", "300", "--pending", "8"] if quick else []),
        ["proposal_bench.py", "quality"] + (["--seeds", "1"] if quick else []),
        ["failing_region_bench.py"] + (["--seeds", "1"] if quick else []),
        ["diverging_bench.py"] + (["--seeds", "1"] if quick else ["--modes", "sync", "async"]),
        ["scale_sim.py"] + (["--workers", "64", "256", "--masters", "1", "2", "--mean-run", "30"] if quick else []),
        ["cost_model.py"] + (["--sizes", "256", "1024", "--k", "1", "16"] if quick else []),
        ["scale_sim.py", "--compare", "--workers", "1024", "4096", "--masters", "1", "--mean-run", "30"]
        + (["--workers", "256", "--budget-factor", "1"] if quick else []),
        ["scale_sim.py", "--cost-model", "--workers", "4096", "16384", "--masters", "1", "2", "4", "8", "default"]
        + (["--workers", "4096", "--masters", "1", "default"] if quick else []),
        ["scale_sim.py", "--quality"] + (["--seeds", "2"] if quick else []),
        ["scale_sim.py", "--quality", "--mean-run", "5"] + (["--seeds", "2"] if quick else []),
        ["early_discarding_bench.py"] + (["--seeds", "1"] if quick else []),
        ["epoch_channel_bench.py"] + (["--workers", "4", "--runs", "16", "--epochs", "10"] if quick else []),
        ["scale_bench.py"] + (["--ranks", "16", "--run-s", "5", "--budget", "48", "--baseline", ""] if quick else []),
    ]
    for step in steps:
        print("== %s" % " ".join(step), flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, step[0])] + step[1:], check=True)


if __name__ == "__main__":
    main()
