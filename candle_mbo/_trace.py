"""A trace of the dispatcher's steps for tests that must act at an exact moment (kill while R proposes,
while a record is written): ``CANDLE_MBO_TRACE=<file>`` appends one line per step. Off (a no-op) otherwise."""

import os
import time

_PATH = os.environ.get("CANDLE_MBO_TRACE")


def trace(*parts):
    if _PATH:
        with open(_PATH, "a", encoding="utf-8") as handle:
            handle.write("%.6f %s\n" % (time.time(), " ".join(str(p) for p in parts)))
