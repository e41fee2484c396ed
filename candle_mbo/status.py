"""The outcome of a run: one of four statuses, in one place.

``ok``: run() returned and the objective (if one is needed) was read. ``failed``: run() or
initialize_parameters() raised, or the objective is missing or not finite. ``timeout``: the run was
killed after ``--timeout`` seconds. ``crashed``: the process running it died (signal, os._exit, OOM).
"""

OK = "ok"
FAILED = "failed"
TIMEOUT = "timeout"
CRASHED = "crashed"

ALL = (OK, FAILED, TIMEOUT, CRASHED)
