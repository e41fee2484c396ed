"""What people see: progress lines and the summary (:mod:`.progress`), the plots (:mod:`.plots`) and the
self-contained report.html (:mod:`.html`), put together for an experiment directory by :mod:`.build`.

``python -m candle_mbo.report DIR`` (candle_mbo/report.py) prints the summary and refreshes the plots and
report.html.
"""

from .build import HTML_NAME, PLOT_NAMES, CorruptResults, Data, main, read_records, render

__all__ = ["render", "main", "read_records", "Data", "CorruptResults", "PLOT_NAMES", "HTML_NAME"]
