"""``python -m candle_mbo.report DIR``: the summary of an experiment, and its plots and report.html refreshed.

Only an entry point: the work is :mod:`candle_mbo.reporting`. Inside a training run ``candle_mbo.report``
is the epoch-report function (:func:`candle_mbo.epochs.report`); nothing of candle_mbo imports this module,
so the two never meet.
"""

import sys

from .reporting.build import main

if __name__ == "__main__":
    sys.exit(main())
