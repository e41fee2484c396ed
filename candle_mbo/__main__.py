"""``python -m candle_mbo``: the HPO workflow (see candle_mbo.hpo)."""

import sys

from .hpo import main

sys.exit(main())
