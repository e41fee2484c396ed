"""Who proposes: the optimizer contract, the mlrMBO bridge (R through rpy2), the masters that run it, and
the checks of parameter names. Only the ranks that propose import R (see :mod:`.mbo`)."""
