"""The mlrMBO optimizer: a thin rpy2 bridge to R/candle_mbo.R.

Only the process that runs the optimizer imports this module (and so rpy2 and R); workers never do.
Every call crosses the boundary as a JSON string or a plain number; the logic lives in R/candle_mbo.R.
All calls must come from one thread (R is single-threaded): the HPO workflow runs them on its
optimizer thread.
"""

import json
import logging
import os

from .errors import UsageError
from .optimizer import Optimizer, Proposal

log = logging.getLogger("candle_mbo.mbo")

R_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "R")
LEARNERS = ("default", "rf", "km", "ranger")
CRITS = ("default", "cb", "ei", "aei", "eqi", "adacb", "mr", "se")
LIES = ("best", "mean", "worst", "believer", "none")
PROFILES = ("mlrmbo", "fast")


class RError(RuntimeError):
    """An error raised by R code, with R's message."""


def _start_r():
    """Import rpy2 and start R quietly; R's console output goes to this module's logger."""
    import warnings

    try:
        with warnings.catch_warnings():
            # R starts on the optimizer thread: rpy2 warns that R cannot take over SIGINT there; the
            # main thread keeps Python's handler, which is what the workflow wants.
            warnings.simplefilter("ignore", UserWarning)
            import rpy2.rinterface_lib.callbacks as callbacks
            import rpy2.robjects as robjects
    except ImportError as exc:
        raise UsageError("the HPO workflow needs rpy2 (Python) and R: %s; on Debian run `make setup` "
                         "(python3-rpy2), with conda use environment.yml" % exc) from None
    callbacks.consolewrite_print = lambda text: log.debug("R: %s", text.rstrip())
    callbacks.consolewrite_warnerror = lambda text: log.debug("R: %s", text.rstrip())
    return robjects


class MBOOptimizer(Optimizer):
    """mlrMBO through its human-in-the-loop API (see R/candle_mbo.R for what each step does).

    ``settings``: propose_points, learner, crit, profile, maximize, mode ('sync'/'async'), lie,
    random_lambda.
    """

    name = "mlrMBO"

    def __init__(self, space_file, settings):
        self.space_file = os.path.abspath(space_file)
        self.settings = dict(settings)
        robjects = _start_r()
        self._r = robjects
        self._env = robjects.r("new.env()")
        robjects.r["sys.source"](os.path.join(R_DIR, "candle_mbo.R"), envir=self._env)
        try:
            self.space = json.loads(self._call("cm_setup", self.space_file, json.dumps(self.settings)))
        except RError as exc:
            raise UsageError(str(exc)) from None
        self._proposals = {}

    def _call(self, name, *args):
        from rpy2.rinterface_lib.embedded import RRuntimeError

        try:
            result = self._env[name](*args)
        except RRuntimeError as exc:
            raise RError(_r_message(exc)) from None
        return result[0] if len(result) == 1 else result

    def _points(self, text):
        out = []
        for item in json.loads(text):
            info = {k: item[k] for k in ("crit", "lambda", "error") if item.get(k) is not None}
            proposal = Proposal(item["id"], item["x"], item["params"], item["prop_type"], info)
            self._proposals[proposal.id] = proposal
            out.append(proposal)
        return out

    def initial_design(self, n, seed):
        return self._points(self._call("cm_design", int(n), int(seed)))

    def propose(self, k, seed):
        return self._points(self._call("cm_propose", int(k), int(seed)))

    def tell(self, results):
        items = []
        for point, y in results:
            value = None if y is None else float(y)
            if isinstance(point, Proposal):
                items.append({"id": point.id, "y": value})
                self._proposals.pop(point.id, None)
            else:
                items.append({"x": point, "y": value})
        if not items:
            return []
        return json.loads(self._call("cm_tell", json.dumps(items)))

    def messages(self):
        return json.loads(self._call("cm_take_log"))

    def random_points(self, k, seed):
        return self._points(self._call("cm_random", int(k), int(seed), ""))

    def versions(self):
        """Versions of the R packages behind the optimizer (recorded in experiment.yaml)."""
        return str(self._call("cm_versions"))

    def save(self, folder):
        path = os.path.join(folder, "mlrmbo_opt_path.rds")
        if bool(self._call("cm_save_path", path)):
            return path
        return None

    def save_design(self, proposals, path):
        self._call("cm_save_design", json.dumps([p.id for p in proposals]), path)


def _r_message(exc):
    text = str(exc).strip()
    if text.startswith("Error"):
        text = text.split(":", 1)[-1].strip() if text.count(":") else text
    return " ".join(text.split())
