"""The outcome of a run: one of five statuses, in one place.

``ok``: run() returned and the objective (if one is needed) was found. ``failed``: run() or
initialize_parameters() raised, or the objective is missing or not finite. ``timeout``: the run was
killed after ``--timeout`` seconds. ``crashed``: the process running it died (signal, os._exit, OOM).
``pruned``: the search stopped it early at an epoch report (``--prune``); a result, not a failure: its
record keeps the value it reached and the epoch it stopped at.
"""

OK = "ok"
FAILED = "failed"
TIMEOUT = "timeout"
CRASHED = "crashed"
PRUNED = "pruned"

ALL = (OK, FAILED, TIMEOUT, CRASHED, PRUNED)
