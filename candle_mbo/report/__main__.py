"""``python -m candle_mbo.report DIR``: the summary of an experiment, and its plots and report.html refreshed."""

import sys

from .build import main

sys.exit(main())
