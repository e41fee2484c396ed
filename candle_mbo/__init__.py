"""candle_mbo: hyperparameter optimization of CANDLE-compliant models with mlrMBO, over MPI.

Entry points: ``python -m candle_mbo`` (HPO with mlrMBO) and ``python -m candle_mbo.upf`` (a fixed
list of parameter sets). User code imports ``candle`` (see :mod:`candle_mbo.candle_api`), and a training
loop of its own may call :func:`report` after each epoch (see :mod:`candle_mbo.epochs`).
"""

from .epochs import RunPruned, report

__version__ = "0.1.0"

__all__ = ["report", "RunPruned", "__version__"]
