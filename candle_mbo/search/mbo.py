"""The optimizers behind ``candle_mbo.search.optimizer``'s contract: mlrMBO, and random search over the same space.

A thin rpy2 bridge to R/candle_mbo.R (the loader of the R parts, R/cm_*.R). Only the process that runs an optimizer imports this module (and
so rpy2 and R); workers never do. Every call crosses the boundary as a JSON string or a plain number;
the logic lives in R. All calls must come from one thread (R is single-threaded). Each optimizer sources
the R code into an environment of its own, so several optimizers in one process are independent (they
share R's random number generator, which every seeded call sets first).
"""

import json
import logging
import os

from ..errors import UsageError
from .optimizer import Optimizer, Proposal

log = logging.getLogger("candle_mbo.mbo")

def _r_dir():
    """The R code: beside the package (a checkout, an editable install), else where a wheel put it."""
    import sys

    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "R")
    for folder in (beside, os.path.join(sys.prefix, "share", "candle_mbo", "R")):
        if os.path.isfile(os.path.join(folder, "candle_mbo.R")):
            return folder
    return beside


R_DIR = _r_dir()
LEARNERS = ("default", "rf", "km", "ranger")
CRITS = ("default", "cb", "ei", "aei", "eqi", "adacb", "mr", "se")
LIES = ("best", "mean", "worst", "believer", "none")
PROFILES = ("mlrmbo", "fast")
MODES = ("sync", "async")
# How one fit gives k points (see cm_propose_from in R/cm_propose.R).
BATCHES = ("lambdas", "believer", "both")
TRANSFORMS = ("none", "log")  # --objective-transform: what the surrogate sees of a value (R/cm_feedback.R)
LATER_INFILLS = ("pool", "focussearch")
# Criteria that can propose several points that run at the same time. Sync batches: mlrMBO's
# multi-point 'cb' (random lambdas), its constant liar (ei, aei only), and adacb as CB points drawn
# around its adaptive lambda. Async: pending points enter the surrogate under a lie, which spreads
# every criterion except the mean response (mr ignores uncertainty, so it proposes a running point
# again).
BATCH_CRITS = {"sync": ("default", "cb", "adacb", "ei", "aei"),
               "async": ("default", "cb", "adacb", "ei", "aei", "eqi", "se")}
CRIT_HELP = ("infill criterion: default (mlrMBO's confidence bound, cb), cb, adacb (cb whose lambda moves from "
             "exploring to exploiting over the budget), ei, aei (expected improvement; sync batches use mlrMBO's "
             "constant liar), eqi and se (async mode, or one point per batch), mr (one worker only)")


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


def check_settings(settings):
    """Refuse settings that cannot work, before R starts: UsageError naming the option and the choices."""
    for key, choices, option in (("crit", CRITS, "--crit"), ("learner", LEARNERS, "--learner"),
                                 ("lie", LIES, "--lie"), ("profile", PROFILES, "--profile"),
                                 ("mode", MODES, "--mode"), ("batch", BATCHES, "batch"),
                                 ("objective_transform", TRANSFORMS, "--objective-transform"),
                                 ("later_infill", LATER_INFILLS, "later_infill")):
        value = settings.get(key)
        if value is not None and value not in choices:
            raise UsageError("%s %s: unknown; choose one of %s" % (option, value, ", ".join(choices)))
    mode = settings.get("mode") or "sync"
    crit = settings.get("crit") or "default"
    # how many points one proposal can be asked for: a sync batch; in async mode what a request can ask for
    # (``request_points``: the workers, up to the source's largest batch), whatever --propose-points says
    k = int(settings.get("propose_points") or 1)
    if mode == "async" and settings.get("request_points") is not None:
        k = int(settings["request_points"])
    if k > 1 and crit not in BATCH_CRITS[mode]:
        if mode == "sync":
            where = ("sync mode proposes batches of %d points (--propose-points, default: the number of workers)"
                     % k)
            hint = "; or --propose-points 1" + ("" if crit == "mr" else ", or --mode async")
        else:
            where = "async mode with %d points running at once (one per worker)" % k
            hint = "; mr suits a single worker"
        raise UsageError("--crit %s cannot choose several points at once: %s; choose one of %s%s"
                         % (crit, where, ", ".join(BATCH_CRITS[mode]), hint))


class _RSpace(Optimizer):
    """What both optimizers share: the space loaded by R, the point registry, tell/adopt/discard/restore."""

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
        if not self.space.get("constants"):
            self.space["constants"] = {}

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
            out.append(Proposal(item["id"], item["x"], item["params"], item["prop_type"], info))
        return out

    def design(self, n, seed):
        return self._points(self._call("cm_design", int(n), int(seed)))

    def tell(self, results):
        items = []
        for point, y in results:
            value = None if y is None else float(y)
            if isinstance(point, Proposal):
                items.append({"id": point.id, "y": value})
            else:
                items.append({"x": point, "y": value})
        if not items:
            return []
        return json.loads(self._call("cm_tell", json.dumps(items)))

    def adopt(self, x):
        return self._points("[%s]" % self._call("cm_adopt", json.dumps(x)))[0]

    def adopt_many(self, xs):
        if not xs:
            return []
        ids = json.loads(self._call("cm_adopt_many", json.dumps(list(xs))))
        return [Proposal(i, x, None, "adopted", {}) for i, x in zip(ids, xs)]

    def discard(self, proposals):
        ids = [p.id for p in proposals]
        if ids:
            self._call("cm_discard", json.dumps(ids))

    def restore(self, items):
        if not items:
            return []
        plain = [{"x": it["x"], "y": None if it.get("y") is None else float(it["y"]), "step": it.get("step") or 0,
                  "prop_type": it.get("prop_type") or "initdesign", "info": it.get("info") or {},
                  "running": bool(it.get("running"))} for it in items]
        return self._points(self._call("cm_restore", json.dumps(plain)))

    def set_budget(self, evaluations, design_size=None):
        self._call("cm_set_budget", int(evaluations), int(design_size) if design_size else self._r.NA_Integer)

    def messages(self):
        return json.loads(self._call("cm_take_log"))

    def versions(self):
        """Versions of the R packages behind the optimizer (recorded in experiment.yaml)."""
        return str(self._call("cm_versions"))


class MBOOptimizer(_RSpace):
    """mlrMBO through its human-in-the-loop API (see R/candle_mbo.R for what each step does).

    ``settings``: mode ('sync' or 'async'), propose_points (sync: points per batch; async: the most
    points running at once, i.e. the workers), learner, crit, profile ('mlrmbo' or 'fast'), maximize,
    lie (async: the value assumed for running points), random_lambda (async cb: a fresh Exp(1) lambda
    per point), objective_transform ('none' or 'log': the surrogate sees log10 of the values; one <= 0
    enters a decade below the smallest positive value). Values beyond the divergence fence (median + 100
    robust spreads of the ok values, see cm_fence in R/cm_feedback.R) enter capped at it, re-computed
    before every fit (objective_cap false turns that off, fence_k changes the 100: benchmarks).
    Criteria that cannot choose several points at once are refused (UsageError).
    Tuning (benchmarks; defaults are measured, see docs/performance.md): batch ('lambdas',
    'believer', 'both': how one fit gives k points), max_fit_rows (the most rows a fit takes: 200 for
    kriging, 300 for forests), reuse_hyper (async kriging keeps its hyperparameters until the results
    grow by 10%; default true), later_infill ('pool': the points of a lambdas batch after the first
    pick from one shared candidate pool, the default; 'focussearch': a focus search each), pool_size.
    """

    name = "mlrMBO"

    def __init__(self, space_file, settings):
        check_settings(settings)
        super().__init__(space_file, dict(settings, optimizer="mbo"))

    def propose(self, k, seed):
        return self._points(self._call("cm_propose", int(k), int(seed)))

    def save(self, folder):
        path = os.path.join(folder, "mlrmbo_opt_path.rds")
        if bool(self._call("cm_save_path", path)):
            return path
        return None


class RandomSearch(_RSpace):
    """Random search over the same space (ParamHelpers' sampler, constants and trafos as for mlrMBO).

    The design is the same Latin hypercube as mlrMBO's; each proposal is a uniform random point.
    ``settings`` needs nothing (mode is accepted for symmetry).
    """

    name = "random"

    def __init__(self, space_file, settings=None):
        settings = dict(settings or {})
        settings.setdefault("mode", "sync")
        super().__init__(space_file, dict(settings, optimizer="random", propose_points=1))

    def propose(self, k, seed):
        return self._points(self._call("cm_random", int(k), int(seed), ""))


def make_optimizer(kind, space_file, settings):
    """``--optimizer mbo|random``: the optimizer for ``kind``."""
    if kind == "random":
        return RandomSearch(space_file, settings)
    if kind == "mbo":
        return MBOOptimizer(space_file, settings)
    raise UsageError("--optimizer %s: unknown; choose one of mbo, random" % kind)


def _r_message(exc):
    text = str(exc).strip()
    if text.startswith("Error"):
        text = text.split(":", 1)[-1].strip() if text.count(":") else text
    return " ".join(text.split())
