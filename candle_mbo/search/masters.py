"""The masters: optimizers (mlrMBO through rpy2) that propose points for the dispatcher, one or several.

Rank 0 is the dispatcher (journal, budget, every worker) and runs master 0 on a thread of its own
(:class:`LocalMaster`). With ``--masters M``, ranks 1..M-1 are optimizer ranks, each with its own R and
mlrMBO (:func:`optimizer_rank`), reached through a :class:`RemoteMaster`. Every master learns every
finished evaluation and every running point, whoever proposed it, so that each searches with all the
data; each proposal request carries its own step number, which seeds R, so masters never share a random
stream. Proposals of several masters are computed at the same time, which is what keeps thousands of
workers fed (docs/ARCHITECTURE.md has the measurements and the reasons for this layout).

Protocol between the dispatcher and an optimizer rank (after the rank's ``hello``)::

    dispatcher -> rank   ("optimize", settings)       build the optimizer
    rank -> dispatcher   ("optimizer-ready", info) | ("optimizer-error", message)
    dispatcher -> rank   ("restore", (items, run_ids))   a resumed journal's tasks (Optimizer.restore)
    dispatcher -> rank   ("proposed", [(origin, proposal_id, x), ...])   another master's points, proposed
                                                                     and not started: pending from now
    dispatcher -> rank   ("dispatched", [(run_id, origin, proposal_id, x), ...])   points now running
    dispatcher -> rank   ("tell", [(run_id, x, y), ...])                           finished evaluations
    dispatcher -> rank   ("discard", [proposal_id, ...])   own proposals that will never run
    dispatcher -> rank   ("withdraw", [(origin, proposal_id), ...])   others' proposals that will never run
    dispatcher -> rank   ("propose", {"k", "step", "seed"})
    rank -> dispatcher   ("proposals", {"step", "items": [proposal tuples], "elapsed"})
    rank -> dispatcher   ("optimizer-failed", message)   a bug: the dispatcher ends the job
    dispatcher -> rank   ("stop", {"now": bool})      end (sent by pool.ranks.Ranks, as to every rank)

A proposal travels as ``(proposal_id, x, params, prop_type, info)``. Messages from one sender arrive in
order, so a master has always learnt what the dispatcher knew when it asked for a proposal.
"""

import logging
import os
import queue
import threading
import time
import traceback

from .._trace import trace
from ..pool.transport import Backoff

log = logging.getLogger("candle_mbo.masters")

# The reliability tests' hook: CANDLE_MBO_INJECT_FAULT=slow-proposal:S makes every proposal take S s more
# (after its "propose-start" trace line), so that a kill lands while a proposal is really in progress.
_FAULT = os.environ.get("CANDLE_MBO_INJECT_FAULT", "")
_SLOW_PROPOSAL = float(_FAULT.split(":")[1]) if _FAULT.startswith("slow-proposal:") else 0.0


def merge_following_tells(items, take_next, tell_items):
    """``items`` plus those of the tells queued right behind them, so that results that piled up while a
    master was busy are told in one optimizer call (each call has a fixed cost). ``take_next()``: the next
    queued call or message, or None; ``tell_items(it)``: its results if it is a tell, else None. Returns
    the results and the first queued thing that is not a tell (to be handled next), or None."""
    items = list(items)
    while True:
        following = take_next()
        if following is None:
            return items, None
        more = tell_items(following)
        if more is None:
            return items, following
        items += more


class MasterLogic:
    """One optimizer plus the bookkeeping that maps run ids to its own Proposal objects.

    The same code serves master 0 (on a thread of rank 0) and optimizer ranks. ``optimizer`` follows
    the contract of :mod:`candle_mbo.search.optimizer`.
    """

    def __init__(self, optimizer, index):
        self.opt = optimizer
        self.index = index
        self.handed = {}  # proposal_id -> Proposal proposed here and not dispatched yet
        self.running = {}  # run_id -> Proposal (own, or adopted from another master or a resume)
        self.foreign = {}  # (origin, proposal_id) -> Proposal another master proposed, adopted as pending

    def design(self, n, seed):
        return self._hand_out(self.opt.design(n, seed))

    def propose(self, k, seed):
        if _SLOW_PROPOSAL:
            time.sleep(_SLOW_PROPOSAL)
        return self._hand_out(self.opt.propose(k, seed))

    def _hand_out(self, proposals):
        out = []
        for proposal in proposals:
            self.handed[proposal.id] = proposal
            out.append((proposal.id, proposal.x, proposal.params, proposal.prop_type, proposal.info))
        return out

    def restore(self, items, running_ids):
        """A resumed journal's tasks (see Optimizer.restore); the running ones keep their run ids."""
        for run_id, proposal in zip(running_ids, self.opt.restore(items)):
            self.running[run_id] = proposal

    def proposed(self, items):
        """Another master's proposals, not started yet: pending here from now on (as running points are),
        so that masters proposing at the same time do not propose the same region twice."""
        new = {}
        for origin, proposal_id, x in items:
            if origin != self.index and (origin, proposal_id) not in self.foreign:
                new[(origin, proposal_id)] = x
        self.foreign.update(zip(new, self._adopt(list(new.values()))))

    def _adopt(self, xs):
        """Points made elsewhere, pending here from now on: one optimizer call for all of them."""
        adopt_many = getattr(self.opt, "adopt_many", None)
        return adopt_many(xs) if adopt_many is not None else [self.opt.adopt(x) for x in xs]

    def dispatched(self, items):
        """Points that are running now: own proposals get their run id, others keep the pending point
        adopted when they were proposed, or are adopted now."""
        unknown = []
        for run_id, origin, proposal_id, x in items:
            if origin == self.index:
                proposal = self.handed.pop(proposal_id, None)
            else:
                proposal = self.foreign.pop((origin, proposal_id), None)
            if proposal is None:
                unknown.append((run_id, x))
            else:
                self.running[run_id] = proposal
        for (run_id, _), proposal in zip(unknown, self._adopt([x for _, x in unknown])):
            self.running[run_id] = proposal

    def withdraw(self, pairs):
        """Other masters' proposals that will never run: no longer pending here."""
        proposals = [self.foreign.pop(tuple(pair)) for pair in pairs if tuple(pair) in self.foreign]
        if proposals:
            self.opt.discard(proposals)

    def tell(self, items):
        results = []
        for run_id, x, y in items:
            proposal = self.running.pop(run_id, None)
            results.append((proposal if proposal is not None else x, y))
        if results:
            self.opt.tell(results)

    def discard(self, proposal_ids):
        proposals = [self.handed.pop(i) for i in proposal_ids if i in self.handed]
        if proposals:
            self.opt.discard(proposals)

    def messages(self):
        return self.opt.messages()


class LocalMaster:
    """Master 0: a MasterLogic whose every call runs, in order, on one daemon thread of rank 0.

    R is single-threaded and rpy2 releases the GIL while R computes, so the dispatcher keeps receiving
    results and dispatching while R fits. Calls that return nothing are queued without waiting; an error
    in one surfaces at the next ``check()``. The thread is a daemon, so that a job interrupted while R
    computes can exit at once.
    """

    index = 0

    def __init__(self):
        self._calls = queue.Queue()
        self._errors = []
        self._thread = threading.Thread(target=self._serve, name="optimizer", daemon=True)
        self._thread.start()
        self.optimizer = self.logic = None
        self._build = None
        self._request = None  # (step, done Event, result box, k)
        self.last_seconds = None  # what the last proposal took

    def begin(self, make_optimizer, settings):
        """Start building the optimizer on the thread (R starts there); ``ready()`` waits for it."""
        self._build = self.submit(make_optimizer, settings)

    def ready(self):
        """Wait for the optimizer; raises what building it raised (a bad space file is a UsageError)."""
        box, done = self._build
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        self.optimizer = value
        self.logic = MasterLogic(value, 0)
        return value

    def _serve(self):
        held = None
        while True:
            call, held = held or self._calls.get(), None
            fn, args, box, done = call
            if self.logic is not None and fn == self.logic.tell and done is None:
                items, held = merge_following_tells(args[0], self._next_call, self._tell_items)
                args = (items,)
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box.append((False, exc))
                if done is None:
                    self._errors.append(exc)
            if done is not None:
                done.set()

    def _next_call(self):
        try:
            return self._calls.get_nowait()
        except queue.Empty:
            return None

    def _tell_items(self, call):
        fn, args, _, done = call
        return args[0] if fn == self.logic.tell and done is None else None

    def submit(self, fn, *args):
        """Queue ``fn(*args)`` on the thread; returns ``(box, event)`` to collect its result."""
        box, done = [], threading.Event()
        self._calls.put((fn, args, box, done))
        return box, done

    def call(self, fn, *args):
        box, done = self.submit(fn, *args)
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def post(self, fn, *args):
        """Queue ``fn(*args)`` without waiting for it (its error surfaces at ``check``)."""
        self._calls.put((fn, args, [], None))

    def check(self):
        if self._errors:
            raise self._errors.pop(0)

    # -- the handle interface (shared with RemoteMaster) ---------------------------------------------
    @property
    def busy(self):
        return self._request is not None

    def request(self, k, step, seed):
        started = time.monotonic()

        def work():
            trace("propose-start", step, k)
            items = self.logic.propose(k, seed)
            trace("propose-end", step, len(items))
            return items, self.logic.messages(), time.monotonic() - started

        box, done = self.submit(work)
        self._request = (step, done, box, k)

    def requested(self):
        return self._request[3] if self._request else 0

    def proposals(self):
        """``(step, items)`` of the finished request, or None while it runs."""
        self.check()
        if self._request is None or not self._request[1].is_set():
            return None
        step, _, box, _ = self._request
        self._request = None
        ok, value = box[0]
        if not ok:
            raise value
        items, messages, elapsed = value
        self.last_seconds = elapsed
        for message in messages:
            log.warning("optimizer: %s", message)
        return step, items

    def design(self, n, seed):
        items = self.call(self.logic.design, n, seed)
        for message in self.call(self.logic.messages):
            log.warning("optimizer: %s", message)
        return items

    def restore(self, items, running_ids):
        self.call(self.logic.restore, items, running_ids)

    def proposed(self, items):
        self.post(self.logic.proposed, items)

    def dispatched(self, items):
        self.post(self.logic.dispatched, items)

    def withdraw(self, pairs):
        self.post(self.logic.withdraw, pairs)

    def tell(self, items):
        self.post(self.logic.tell, items)

    def discard(self, proposal_ids):
        self.post(self.logic.discard, proposal_ids)

    def messages(self):
        return self.call(self.logic.messages)

    def close(self):
        pass


class RemoteMaster:
    """The dispatcher's handle on an optimizer rank (see the module docstring for the protocol)."""

    def __init__(self, link, rank, index, stop):
        """``stop(ranks)`` tells its rank to end: ``Ranks.stop``, the one owner of the ranks' lifecycle."""
        self.link = link
        self.rank = rank
        self.index = index
        self._stop = stop
        self._request = None  # (step, k)
        self._answer = None
        self._failure = None
        self.ready = None
        self.last_seconds = None

    def handle(self, message):
        """A message from the optimizer rank (routed here by the pool)."""
        kind, payload = message
        if kind == "proposals":
            self._answer = (payload["step"], payload["items"])
            self.last_seconds = payload.get("elapsed") or 0.0
        elif kind in ("optimizer-ready", "optimizer-error"):
            self.ready = (kind == "optimizer-ready", payload)
        elif kind == "optimizer-failed":
            self._failure = payload
        return []

    def start(self, settings):
        self.link.send(self.rank, ("optimize", settings))

    @property
    def busy(self):
        return self._request is not None

    def request(self, k, step, seed):
        self._request = (step, k)
        self.link.send(self.rank, ("propose", {"k": k, "step": step, "seed": seed}))

    def requested(self):
        return self._request[1] if self._request else 0

    def check(self):
        if self._failure is not None:
            raise RuntimeError("optimizer rank %d failed: %s" % (self.rank, self._failure))

    def proposals(self):
        self.check()
        if self._answer is None:
            return None
        answer, self._answer, self._request = self._answer, None, None
        return answer

    def restore(self, items, running_ids):
        self.link.send(self.rank, ("restore", (items, running_ids)))

    def proposed(self, items):
        self.link.send(self.rank, ("proposed", items))

    def dispatched(self, items):
        self.link.send(self.rank, ("dispatched", items))

    def withdraw(self, pairs):
        self.link.send(self.rank, ("withdraw", pairs))

    def tell(self, items):
        self.link.send(self.rank, ("tell", items))

    def discard(self, proposal_ids):
        self.link.send(self.rank, ("discard", proposal_ids))

    def messages(self):
        return []

    def close(self):
        self._stop([self.rank])


def optimizer_rank(link, settings, make_optimizer, master=0):
    """The loop of an optimizer rank: build the optimizer, then answer the dispatcher until ``stop``."""
    try:
        optimizer = make_optimizer(settings)
    except Exception as exc:  # noqa: BLE001 - reported; the dispatcher decides
        link.send(master, ("optimizer-error", str(exc)))
        optimizer = None
    else:
        link.send(master, ("optimizer-ready", {"rank": link.rank}))
    logic = MasterLogic(optimizer, settings["master_index"]) if optimizer is not None else None
    backoff = Backoff()
    handlers = {"proposed": "proposed", "dispatched": "dispatched", "tell": "tell", "discard": "discard",
                "withdraw": "withdraw"}
    held = None
    while True:
        received, held = held or link.wait(3600.0, backoff, source=master), None
        if received is None:
            continue
        kind, payload = received[1]
        backoff.reset()
        if kind == "tell":
            payload, held = merge_following_tells(payload, lambda: link.poll(master),
                                                  lambda message: message[1][1] if message[1][0] == "tell" else None)
        if kind == "stop":
            break
        if logic is None:
            continue
        try:
            if kind == "restore":
                logic.restore(*payload)
            elif kind in handlers:
                getattr(logic, handlers[kind])(payload)
            elif kind == "propose":
                started = time.monotonic()
                items = logic.propose(payload["k"], payload["seed"])
                for message in logic.messages():
                    log.warning("optimizer rank %d: %s", link.rank, message)
                link.send(master, ("proposals", {"step": payload["step"], "items": items,
                                                 "elapsed": time.monotonic() - started}))
        except Exception:  # noqa: BLE001 - a bug: the dispatcher ends the job with this message
            link.send(master, ("optimizer-failed", traceback.format_exc(limit=8)))
    link.flush()
    return 0


def make_optimizer(settings):
    """The optimizer a master runs, from the search settings (``optimizer``: mbo or random; ``space``;
    ``budget`` and ``design_size``, when known, tell warm-up and adaptive criteria how far the search is:
    every master gets both, so that each sees the search as master 0 does)."""
    from .mbo import make_optimizer as make

    optimizer = make(settings.get("optimizer", "mbo"), settings["space"], settings)
    if settings.get("budget"):
        optimizer.set_budget(settings["budget"], settings.get("design_size"))
    return optimizer


def masters_rule(workers):
    """The default number of masters for ``workers`` workers (documented in --help and the user guide)."""
    return max(1, min(8, (workers + 255) // 256))

