"""Worker processes that give every item a time budget: one slow message never stalls a run.

CPython's ``re`` cannot be interrupted in the middle of a match, and a hostile message may make
any parser slow; so parsing runs in worker processes and the parent keeps the clock:

1. ``BudgetPool`` starts ``size`` worker processes, each with its own pipe. A worker runs the
   ``initializer``, says it is ready, then takes items one at a time and sends back
   ``(sequence number, result, time it finished)``.
2. ``imap`` hands each worker up to ``PER_WORKER`` small items ahead (so a worker never waits for
   the parent while it stores results), and yields the results in the order of the input.
3. An item is "started" when the worker finished the one before it (or when it was sent, if the
   worker was idle). An item still running ``budget`` seconds after its start gets
   ``on_timeout(item)`` as its result: its worker is killed and replaced, and the items it had
   not started yet are handed out again. A worker that dies gets ``on_crash(item)`` the same way.
4. In a service (threads: ``fork`` is unsafe), :func:`service_start_method` gives ``forkserver``
   where the system has it: one clean process imports the parser once and forks each worker from
   itself (a worker ready in milliseconds, its imported code shared with its siblings), else
   ``spawn`` (Windows: each worker imports the parser itself).
5. The parent never waits on a full pipe: items sent ahead are small (a path and offsets; a
   worker reads the bytes itself), and an item carrying bytes goes only to an idle worker.
   Results are read as soon as they arrive, so a worker never blocks the parent either.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

PER_WORKER = 16
#: How far ahead of the oldest unfinished item the pool reads its input (bounds buffered results).
WINDOW = 256
#: A worker that is not ready this long after it was started is taken for broken.
STARTUP_SECONDS = 120.0
_POSIX = os.name == "posix" and hasattr(select, "poll")


def _worker_main(conn: Connection, func: Callable[[Any], Any], initializer: Callable[..., None] | None,
                 initargs: tuple[Any, ...]) -> None:
    if initializer is not None:
        initializer(*initargs)
    conn.send(("ready", None, time.monotonic()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if msg is None:
            return
        seq, arg = msg
        result = func(arg)
        conn.send((seq, result, time.monotonic()))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    started: float
    ready_at: float | None = None
    last_finish: float | None = None
    queue: deque[tuple[int, Any, float]] = field(default_factory=deque)  # (seq, item, sent at)
    poller: Any = None  # select.poll() on this worker's pipe (POSIX)

    def __post_init__(self) -> None:
        if _POSIX:
            self.poller = select.poll()
            self.poller.register(self.conn.fileno(), select.POLLIN)

    def head_started(self) -> float | None:
        """When the item at the head of the queue started running, if it has."""
        if not self.queue or self.ready_at is None:
            return None
        return max(self.queue[0][2], self.last_finish or self.ready_at)


def service_start_method(preload: list[str]) -> str:
    """How a process with threads starts workers: ``forkserver`` (modules ``preload`` imported once,
    in the server) where available, else ``spawn``."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    # the server is started at the first worker; the list is read then (later changes are ignored)
    multiprocessing.get_context("forkserver").set_forkserver_preload([__name__, *preload, "helper.index.forkfreeze"])
    return "forkserver"


class PoolBroken(RuntimeError):
    """Workers cannot be started (or die before being ready)."""


class BudgetPool:
    def __init__(
        self,
        size: int,
        func: Callable[[Any], Any],
        *,
        budget: float,
        on_timeout: Callable[[Any], Any],
        on_crash: Callable[[Any], Any],
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        start_method: str | None = None,
        small: Callable[[Any], bool] = lambda item: True,
    ) -> None:
        method = start_method or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        self._ctx = multiprocessing.get_context(method)
        self._func, self._initializer, self._initargs = func, initializer, initargs
        self.budget = budget
        self._on_timeout, self._on_crash, self._small = on_timeout, on_crash, small
        self._workers: list[_Worker] = []
        self._failed_starts = 0
        #: The item that took longest so far, with its seconds (given up on or not).
        self.slowest: tuple[float, Any] | None = None
        try:
            for _ in range(max(1, size)):
                self._workers.append(self._start())
        except BaseException:
            self.close()
            raise

    # --- workers -----------------------------------------------------------------------------

    def _start(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main, args=(child, self._func, self._initializer, self._initargs), daemon=True
        )
        try:
            proc.start()
        except (OSError, RuntimeError) as exc:
            raise PoolBroken(str(exc)) from exc
        finally:
            child.close()
        return _Worker(proc, parent, time.monotonic())

    def _replace(self, w: _Worker) -> _Worker:
        self._stop(w, kill=True)
        new = self._start()
        self._workers[self._workers.index(w)] = new
        return new

    @staticmethod
    def _stop(w: _Worker, *, kill: bool) -> None:
        try:
            if kill:
                w.process.kill()
            else:
                w.conn.send(None)
        except (OSError, ValueError):
            pass
        w.process.join(5 if not kill else None)
        if w.process.is_alive():
            w.process.kill()
            w.process.join()
        w.conn.close()

    def close(self) -> None:
        for w in self._workers:
            self._stop(w, kill=bool(w.queue))
        self._workers = []

    def reset(self) -> None:
        """Ready for another run: workers still busy with items of a run left early are replaced."""
        for w in list(self._workers):
            if w.queue:
                self._replace(w)

    def __enter__(self) -> BudgetPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- running -----------------------------------------------------------------------------

    def run_one(self, item: Any) -> Any:
        """The result of one item, within the budget."""
        return next(self.imap([item]))

    def imap(self, items: Iterable[Any]) -> Iterator[Any]:
        """Results of ``func`` over ``items``, in order; an item over budget gets ``on_timeout(item)``."""
        source = iter(items)
        exhausted = False
        retry: deque[tuple[int, Any]] = deque()  # handed out again after their worker was replaced
        done: dict[int, Any] = {}
        next_seq = next_out = 0

        def fill() -> None:
            """Hand out work: retried items first, then new ones within the window."""
            nonlocal exhausted, next_seq
            for w in list(self._workers):
                while len(w.queue) < PER_WORKER:
                    if retry:
                        seq, item = retry[0]
                    elif not exhausted and next_seq - next_out < WINDOW:
                        try:
                            item = next(source)
                        except StopIteration:
                            exhausted = True
                            break
                        seq = next_seq
                        next_seq += 1
                        retry.append((seq, item))
                    else:
                        break
                    if w.queue and not self._small(item):
                        break  # bytes only go to an idle worker; another worker or a later turn takes it
                    retry.popleft()
                    if not self._send(w, seq, item):
                        w.queue.pop()  # never sent: not this item's fault
                        retry.appendleft((seq, item))
                        w = self._crashed(w, retry, done)

        while True:
            fill()
            # 2. Give back what is finished, in order; between two, keep the workers fed (the caller
            # may take a while with each result).
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
                for w in self._ready(0.0):
                    self._drain(w, retry, done)
                fill()
            if exhausted and not retry and not any(w.queue for w in self._workers):
                return
            # 3. Wait for results, or for the next deadline.
            now = time.monotonic()
            deadline = now + 1.0
            for w in self._workers:
                started = w.head_started()
                if started is not None:
                    deadline = min(deadline, started + self.budget)
                elif w.ready_at is None:
                    deadline = min(deadline, w.started + STARTUP_SECONDS)
            for w in self._ready(max(0.0, deadline - now)):
                self._drain(w, retry, done)
            # 4. Over budget: kill and replace, after reading anything it may just have finished.
            now = time.monotonic()
            for w in list(self._workers):
                if w.ready_at is None and now - w.started > STARTUP_SECONDS:
                    raise PoolBroken("un processus d'analyse ne démarre pas")
                started = w.head_started()
                if started is None or now - started <= self.budget:
                    continue
                w = self._drain(w, retry, done)
                started = w.head_started()
                if started is not None and time.monotonic() - started > self.budget:
                    seq, item, _ = w.queue.popleft()
                    done[seq] = self._on_timeout(item)
                    self._note(time.monotonic() - started, item)
                    self._requeue(w, retry)
                    self._replace(w)

    def _ready(self, timeout: float) -> list[_Worker]:
        """Workers with something to read, waiting up to ``timeout`` seconds for one."""
        if _POSIX:  # one poll object for the pool: multiprocessing's wait() builds a selector per call
            by_fd = {w.conn.fileno(): w for w in self._workers}
            poller = select.poll()
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]
        conns = wait([w.conn for w in self._workers], timeout=timeout)
        return [w for w in self._workers if w.conn in conns]

    @staticmethod
    def _readable(w: _Worker) -> bool:
        if _POSIX:
            return bool(w.poller.poll(0))
        return w.conn.poll()

    def _send(self, w: _Worker, seq: int, item: Any) -> bool:
        w.queue.append((seq, item, time.monotonic()))
        try:
            w.conn.send((seq, item))
        except (OSError, ValueError):
            return False
        return True

    def _drain(self, w: _Worker, retry: deque[tuple[int, Any]], done: dict[int, Any]) -> _Worker:
        """Read every result ``w`` has sent; replace it if it died. Returns the worker now in its slot."""
        try:
            while self._readable(w):
                seq, result, finished = w.conn.recv()
                if seq == "ready":
                    w.ready_at = finished
                    self._failed_starts = 0
                    continue
                head_seq, item, sent = w.queue.popleft()
                assert head_seq == seq
                self._note(finished - max(sent, w.last_finish or w.ready_at or sent), item)
                w.last_finish = finished
                done[seq] = result
        except (EOFError, OSError):
            return self._crashed(w, retry, done)
        return w

    def _crashed(self, w: _Worker, retry: deque[tuple[int, Any]], done: dict[int, Any]) -> _Worker:
        if w.ready_at is None:
            self._failed_starts += 1
            if self._failed_starts >= 3:
                raise PoolBroken("les processus d'analyse s'arrêtent au démarrage")
        elif w.queue:
            seq, item, _ = w.queue.popleft()
            done[seq] = self._on_crash(item)
        self._requeue(w, retry)
        return self._replace(w)

    @staticmethod
    def _requeue(w: _Worker, retry: deque[tuple[int, Any]]) -> None:
        retry.extendleft(reversed([(seq, item) for seq, item, _ in w.queue]))
        w.queue.clear()

    def _note(self, seconds: float, item: Any) -> None:
        if self.slowest is None or seconds > self.slowest[0]:
            self.slowest = (seconds, item)


# --- pools kept between runs -----------------------------------------------------------------------

_idle: dict[Any, BudgetPool] = {}
_idle_lock = threading.Lock()


def borrow(key: Any, start: Callable[[], BudgetPool]) -> BudgetPool:
    """An idle pool made for ``key``, or a new one from ``start()``; hand it back with :func:`give_back`."""
    with _idle_lock:
        pool = _idle.pop(key, None)
    return pool if pool is not None else start()


def give_back(key: Any, pool: BudgetPool) -> None:
    """Keep ``pool`` for the next run with the same ``key`` (one idle pool at most: others are closed)."""
    try:
        pool.reset()
    except BaseException:
        pool.close()
        raise
    with _idle_lock:
        others = [k for k in _idle if k != key] + ([key] if key in _idle else [])
        stale = [_idle.pop(k) for k in others]
        _idle[key] = pool
    for old in stale:
        old.close()


@atexit.register
def _close_idle() -> None:
    with _idle_lock:
        pools = list(_idle.values())
        _idle.clear()
    for pool in pools:
        pool.close()
