"""Checkpoint/restart shared by the PyTorch and Keras checkpointers (candle_lib's ``CandleCkpt``).

Layout under ``ckpt_directory`` (default ``<output_dir>/ckpts``), the same as candle_lib's, so either
library restarts from the other's checkpoints::

    epochs/NNN/model.h5          the saved state after epoch NNN (1-based)
    epochs/NNN/ckpt-info.json    epoch, best metric so far, checksum, timestamp, metadata
    last -> epochs/NNN           the newest checkpoint: restart() continues from it
    best -> epochs/NNN           the best one by ckpt_save_best_metric (when ckpt_save_best)
    ckpt.log                     what was saved, kept and deleted

Parameters (from the run's parameter dict): ``ckpt_restart_mode`` off | auto | required,
``ckpt_save_interval`` (save every N epochs; 0 disables checkpoints), ``ckpt_skip_epochs``,
``ckpt_save_best``, ``ckpt_save_best_metric``, ``ckpt_keep_limit`` (newest checkpoints kept besides the
best; older ones of this run are deleted), ``ckpt_checksum``, ``ckpt_directory``, ``epochs``.

Written to survive a kill at any moment: a checkpoint is written into ``work/`` and renamed into
``epochs/`` when complete, and the ``last``/``best`` links are replaced atomically, so ``last`` always
names a complete checkpoint. Restarting after a kill continues from the epoch after the last one saved.
A checkpoint records its ``run_id``; a run with another ``run_id`` (folders shared between runs) does not
restart from it. candle_lib's checkpoints, which have no ``run_id``, restart as before.
"""

import json
import logging
import math
import os
import shutil
import time
import zlib
from datetime import datetime

from .. import epochs
from ._helpers import set_up_logger, str2bool

RESTART_MODES = ("off", "auto", "required")
KEEP_MODES = (None, "all", "linear", "exponential")  # exponential is accepted and kept linearly (as NYI upstream)
MODEL_FILE = "model.h5"
INFO_FILE = "ckpt-info.json"


class CandleCkpt:
    """The framework-independent part: when to save, what to keep, how to restart.

    Subclasses implement ``write_model_backend(model, epoch)`` (write ``self.model_file``) and
    ``build_model(model_file)`` (load it into ``self.model``).
    """

    def __init__(self, gParameters=None, logger="DEFAULT", verbose=True):  # noqa: N803 - candle_lib's names
        params = gParameters if gParameters is not None else {}
        if params.get("ckpt_directory") is None:
            if params.get("output_dir") is None:
                raise ValueError("checkpointing needs ckpt_directory or output_dir in the parameters")
            params["ckpt_directory"] = os.path.join(str(params["output_dir"]), "ckpts")
        self.logger = logger
        self._own_logger = logger == "DEFAULT"
        if self._own_logger:
            # A private logger (not in logging's registry): a resident runner creates one checkpointer per
            # run, and a shared named logger would send every run's lines to every earlier run's log.
            self.logger = logging.Logger("CandleCkpt")
            set_up_logger(os.path.join(str(params["ckpt_directory"]), "ckpt.log"), self.logger, verbose=verbose,
                          fmt_line="%(asctime)s CandleCkpt: %(message)s")
        self.scan_params(params)
        self.epochs = []  # epochs this instance wrote and still keeps, oldest first
        self.epoch_best = 0
        self.model = None
        self.model_file = None
        self.cksum_model = "__DISABLED__"
        self.report_initial()

    # -- parameters -----------------------------------------------------------------------------
    def scan_params(self, gParams):  # noqa: N803
        self.gParams = gParams
        self.ckpt_directory = os.path.abspath(str(gParams["ckpt_directory"]))
        self.epoch_max = self.param("epochs", _REQUIRED, "int>=0")
        self.skip_epochs = self.param("ckpt_skip_epochs", 0, "int>=0")
        self.save_best = self.param("ckpt_save_best", True, "bool")
        self.save_best_metric = self.param("ckpt_save_best_metric", None, "str")
        self.best_metric_last = self.param("ckpt_best_metric_last", None, "float")
        if self.best_metric_last is None:
            self.best_metric_last = math.inf
        self.save_interval = self.param("ckpt_save_interval", 1, "int>=0")
        self.save_weights_only = self.param("ckpt_save_weights_only", True, "bool")
        self.checksum_enabled = self.param("ckpt_checksum", False, "bool")
        self.keep_mode = self.param("ckpt_keep_mode", "linear", "str", allowed=KEEP_MODES)
        self.keep_limit = self.param("ckpt_keep_limit", 5, "int>0")
        self.metadata = self.param("metadata", None, "str")
        self.timestamp_last = None
        self.cwd = os.getcwd()

    def param(self, key, default, kind="str", allowed=None):
        """``gParams[key]`` (or ``default``) converted to ``kind``; a clear ValueError naming ``key``."""
        if key in self.gParams:
            value = self.gParams[key]
        elif default is _REQUIRED:
            raise ValueError("checkpointing needs the parameter %s" % key)
        else:
            value = default
        if value is not None:
            try:
                value = _convert(value, kind)
            except (TypeError, ValueError) as exc:
                raise ValueError("parameter %s = %r: %s" % (key, self.gParams.get(key), exc)) from None
        if allowed is not None and value not in allowed:
            raise ValueError("parameter %s = %r: choose one of %s"
                             % (key, value, ", ".join(str(a) for a in allowed if a is not None)))
        return value

    def enabled(self, key):
        return bool(self.gParams.get(key))

    def disabled(self, key):
        return key in self.gParams and not self.gParams[key]

    # -- saving ---------------------------------------------------------------------------------
    def ckpt_epoch(self, epoch, direction, metric_value):
        """Called after each epoch (0-based ``epoch``; saved as ``epoch + 1``). ``direction`` '-' means a
        smaller ``metric_value`` is better, '+' a larger one.

        Under candle_mbo the value is also reported as the run's epoch report (named by
        ``ckpt_save_best_metric``, else ``ckpt_metric``; see :mod:`candle_mbo.epochs`), after the checkpoint
        is written; if the search stops the run there, a Keras callback sets ``model.stop_training`` and a
        PyTorch loop gets :class:`candle_mbo.epochs.RunPruned`.
        """
        self.save_epoch(epoch + 1, direction, metric_value)
        epochs.deliver_from(self, epoch + 1, {self.save_best_metric or epochs.UNNAMED_CKPT_METRIC: metric_value})

    def save_epoch(self, epoch, direction, metric_value):
        """Write the checkpoint of epoch ``epoch`` (1-based) if the save policy says so."""
        if not self.save_check(epoch, direction, metric_value):
            return
        root = self.ckpt_directory
        work = os.path.join(root, "work")
        this = os.path.join(root, "epochs", "%03i" % epoch)
        for stale in (work, this):
            if os.path.exists(stale):
                self.debug("remove: %s" % self.relpath(stale))
                shutil.rmtree(stale)
        os.makedirs(work)
        os.makedirs(os.path.dirname(this), exist_ok=True)
        self.write_model(work, epoch)
        os.rename(work, this)
        self.debug("saved: %s" % self.relpath(this))
        if epoch in self.epochs:
            self.epochs.remove(epoch)
        self.epochs.append(epoch)
        if self.save_best and self.epoch_best == epoch:
            self.symlink(this, os.path.join(root, "best"))
        self.symlink(this, os.path.join(root, "last"))
        self.clean(epoch)

    def save_check(self, epoch, direction, metric_value):
        """Whether epoch ``epoch`` (1-based) is saved; also tracks the best epoch."""
        if self.save_interval == 0:
            return False  # checkpoints disabled
        if epoch < self.skip_epochs:
            self.debug("no checkpoint before epoch %d" % self.skip_epochs)
            return False
        if self.save_check_best(epoch, direction, metric_value):
            return True
        if epoch == self.epoch_max:
            self.info("writing final epoch %i" % epoch)
            return True
        if epoch % self.save_interval == 0:
            return True
        self.debug("not writing epoch %i" % epoch)
        return False

    def save_check_best(self, epoch, direction, metric_value):
        if not self.save_best or metric_value is None:
            return False
        value = float(metric_value)
        if direction == "-":
            improved = value < self.best_metric_last
        elif direction == "+":
            improved = value > self.best_metric_last if self.best_metric_last != math.inf else True
        else:
            raise ValueError("direction must be '-' or '+', not %r" % (direction,))
        self.debug("metric %s: %g (best so far %g)" % (self.save_best_metric, value, self.best_metric_last))
        if improved:
            self.best_metric_last = value
            self.epoch_best = epoch
        return improved

    def write_model(self, dir_work, epoch):
        self.model_file = os.path.join(str(dir_work), MODEL_FILE)
        started = time.time()
        self.write_model_backend(self.model, epoch)
        seconds = max(time.time() - started, 1e-9)
        size_mb = os.path.getsize(self.model_file) / 2.0 ** 20
        self.debug("model written: %0.3f MB in %0.3f s (%0.2f MB/s)" % (size_mb, seconds, size_mb / seconds))
        self.checksum(dir_work)
        self.write_json(os.path.join(str(dir_work), INFO_FILE), epoch)

    def write_model_backend(self, model, epoch):
        raise NotImplementedError("a checkpointer for a framework must write self.model_file")

    def checksum(self, dir_work):
        if self.checksum_enabled:
            self.cksum_model = self.checksum_file(os.path.join(str(dir_work), MODEL_FILE))
        else:
            self.cksum_model = "__DISABLED__"

    def checksum_file(self, filename):
        """CRC32 of a file, as a string (what ckpt-info.json records)."""
        crc = 0
        with open(filename, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                crc = zlib.crc32(block, crc)
        return str(crc)

    def write_json(self, jsonfile, epoch):
        now = datetime.now()
        elapsed = "__FIRST__" if self.timestamp_last is None else (now - self.timestamp_last).total_seconds()
        self.timestamp_last = now
        info = {"epoch": epoch, "save_best_metric": self.save_best_metric,
                "best_metric_last": self.best_metric_last, "model_file": MODEL_FILE,
                "checksum": self.cksum_model, "timestamp": now.strftime("%Y-%m-%d %H:%M:%S"),
                "time_elapsed": elapsed, "metadata": self.metadata, "run_id": self.gParams.get("run_id")}
        with open(jsonfile, "w") as handle:
            json.dump(info, handle)
            handle.write("\n")

    # -- keeping --------------------------------------------------------------------------------
    def clean(self, epoch_now):
        """Delete this run's checkpoints beyond the keep policy; return (kept, deleted)."""
        kept = deleted = 0
        for epoch in reversed(list(self.epochs)):
            if self.keep(epoch, epoch_now, kept):
                kept += 1
            else:
                self.delete(epoch)
                deleted += 1
        return kept, deleted

    def keep(self, epoch, epoch_now, kept):
        if epoch == epoch_now:
            return True
        if self.save_best and epoch == self.epoch_best:
            return True
        if self.keep_mode == "all":
            return True
        return kept < self.keep_limit

    def delete(self, epoch):
        folder = os.path.join(self.ckpt_directory, "epochs", "%03i" % epoch)
        if os.path.exists(folder):
            self.debug("delete: %s" % self.relpath(folder))
            shutil.rmtree(folder)
        else:
            self.info("checkpoint of epoch %i has disappeared" % epoch)
        self.epochs.remove(epoch)

    def symlink(self, src, dst):
        """Point ``dst`` at ``src`` (relative link), replacing any previous link in one step."""
        target = os.path.relpath(str(src), os.path.dirname(str(dst)))
        tmp = "%s.tmp-%d" % (dst, os.getpid())
        if os.path.lexists(tmp):
            os.remove(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, str(dst))
        self.debug("link: %s -> %s" % (self.relpath(dst), target))

    def relpath(self, path):
        path = str(path)
        return os.path.relpath(path, self.cwd) if path.startswith(self.cwd + os.sep) else path

    # -- restarting -----------------------------------------------------------------------------
    def restart(self, model=None, verbose=True):
        """Load the newest checkpoint into the model if ``ckpt_restart_mode`` allows it.

        Returns the checkpoint's ckpt-info.json as a dict (``J["epoch"]`` is the number of epochs done,
        so training continues with ``range(J["epoch"], epochs)``), or None when starting fresh.
        ``required`` without a checkpoint raises.
        """
        mode = self.param("ckpt_restart_mode", "auto", "str", allowed=RESTART_MODES)
        if mode == "off":
            return None
        last = os.path.join(self.ckpt_directory, "last")
        model_file = os.path.join(last, MODEL_FILE)
        if not os.path.exists(model_file):
            if mode == "required":
                raise RuntimeError("ckpt_restart_mode is 'required' but there is no checkpoint at %s" % model_file)
            return None
        info = self.restart_json(last)
        owner, current = info.get("run_id"), self.gParams.get("run_id")
        if owner is not None and current is not None and str(owner) != str(current):
            # a folder shared by several runs (e.g. a workflow without per-run folders): another run's state
            message = "the checkpoint in %s belongs to run %s, not to this run (%s)" % (last, owner, current)
            if mode == "required":
                raise RuntimeError("ckpt_restart_mode is 'required' but " + message)
            self.info(message + "; starting from scratch")
            return None
        started = time.time()
        self.build_model(model_file)
        self.info("restarted from epoch %i (saved %s) in %0.3f s"
                  % (info["epoch"], info.get("timestamp"), time.time() - started))
        return info

    def restart_json(self, directory):
        with open(os.path.join(str(directory), INFO_FILE)) as handle:
            info = json.load(handle)
        self.best_metric_last = info.get("best_metric_last", self.best_metric_last)
        if self.checksum_enabled and info.get("checksum") not in (None, "__DISABLED__"):
            actual = self.checksum_file(os.path.join(str(directory), MODEL_FILE))
            if actual != info["checksum"]:
                raise RuntimeError("checkpoint %s is damaged: checksum %s, expected %s"
                                   % (directory, actual, info["checksum"]))
        return info

    def build_model(self, model_file):
        raise NotImplementedError("a checkpointer for a framework must load model_file into self.model")

    # -- reporting ------------------------------------------------------------------------------
    def report_initial(self):
        if self.save_interval == 0:
            self.info("checkpoints are disabled (ckpt_save_interval = 0)")
            return
        self.info("checkpoints in %s, every %d epoch(s), keeping %d" % (self.ckpt_directory, self.save_interval,
                                                                       self.keep_limit))

    def report_final(self):
        self.info("checkpoints kept: %i %s" % (len(self.epochs), self.epochs))
        if self._own_logger:
            for handler in list(self.logger.handlers):
                handler.close()

    def on_train_end(self, logs=None):
        self.report_final()

    def info(self, message):
        if self.logger is not None:
            self.logger.info(message)

    def debug(self, message):
        if self.logger is not None:
            self.logger.debug(message)


_REQUIRED = object()


def _convert(value, kind):
    if kind == "str":
        return str(value)
    if kind == "bool":
        return value if isinstance(value, bool) else str2bool(value)
    if kind == "float":
        return float(value)
    number = int(value)
    if isinstance(value, float) and value != number:
        raise ValueError("not a whole number")
    if kind == "int>=0" and number < 0:
        raise ValueError("must not be negative")
    if kind == "int>0" and number <= 0:
        raise ValueError("must be greater than zero")
    return number
