"""A trace of the dispatcher's steps for tests that must act at an exact moment (kill while R proposes,
while a record is written): ``CANDLE_MBO_TRACE=<file>`` appends one line per step. Off (a no-op) otherwise.

:func:`phase` marks the phases of a job on rank 0 (hello, roles, optimizers, design, dispatch, summary);
``CANDLE_MBO_INJECT_FAULT=slow-phase:NAME:S`` holds rank 0 S seconds at the start of phase NAME, so that a
test's signal lands inside it.
"""

import os
import time

_PATH = os.environ.get("CANDLE_MBO_TRACE")
_FAULT = os.environ.get("CANDLE_MBO_INJECT_FAULT", "")


def trace(*parts):
    if _PATH:
        with open(_PATH, "a", encoding="utf-8") as handle:
            handle.write("%.6f %s\n" % (time.time(), " ".join(str(p) for p in parts)))


def phase(name):
    """Rank 0 enters phase ``name`` of the job (see the module docstring)."""
    trace("phase", name)
    if _FAULT.startswith("slow-phase:%s:" % name):
        time.sleep(float(_FAULT.rsplit(":", 1)[1]))
