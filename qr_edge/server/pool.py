"""A pool of Rewriters and the admission in front of it: a bounded queue and a time budget per request."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import anyio
import anyio.to_thread

from ..errors import CancelledError
from ..rewriter import Rewriter
from .errors import RequestTimeoutError, ServerBusyError

T = TypeVar("T")


class RewriterPool:
    """N Rewriters, each with its own llama.cpp context: up to N requests run at once, one per rewriter.

    Thread-safe and loop-agnostic: ``call`` blocks a worker thread until a rewriter is idle, so several apps
    (or plain threads) may share one pool.
    """

    def __init__(self, rewriters: Sequence[Rewriter]) -> None:
        if not rewriters:
            raise ValueError("a RewriterPool needs at least one Rewriter")
        self.rewriters = list(rewriters)
        self._idle: queue.SimpleQueue[Rewriter] = queue.SimpleQueue()
        for rewriter in self.rewriters:
            self._idle.put(rewriter)

    @classmethod
    def load(cls, factory: Callable[[], Rewriter], workers: int = 1) -> RewriterPool:
        """Build ``workers`` Rewriters with ``factory`` (each loads its own model context)."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        return cls([factory() for _ in range(workers)])

    @property
    def size(self) -> int:
        return len(self.rewriters)

    @property
    def primary(self) -> Rewriter:
        """The rewriter whose model and adapters describe the pool (all are built alike)."""
        return self.rewriters[0]

    def call(self, job: Callable[[Rewriter], T], deadline: float | None = None) -> T:
        """Run ``job`` on an idle rewriter, waiting for one until ``deadline`` (``time.monotonic``). Blocking."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            rewriter = self._idle.get(timeout=timeout)
        except queue.Empty:
            raise RequestTimeoutError("no rewriter became free before the request's deadline") from None
        try:
            return job(rewriter)
        finally:
            self._idle.put(rewriter)


class Dispatcher:
    """Admission (bounded queue) and time budget for requests going to the pool, from one event loop."""

    def __init__(self, pool: RewriterPool, queue_size: int, timeout_s: float) -> None:
        self.pool = pool
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        # requests running or waiting, and calls still on a rewriter after their request timed out: a freed
        # queue slot would otherwise admit requests that only wait behind the abandoned call and time out too
        self.admitted = 0
        self._lock = threading.Lock()
        self.limiter = anyio.CapacityLimiter(pool.size + queue_size)  # a thread per admitted request at most

    def _release(self) -> None:
        with self._lock:
            self.admitted -= 1

    async def run(self, job: Callable[[Rewriter, threading.Event], T], units: int = 1) -> T:
        """Run ``job(rewriter, cancelled)`` in a worker thread within ``units`` x the timeout.

        On timeout ``cancelled`` is set: the model call stops at its next forward pass (``CancelledError``), a
        job between model calls stops early, and the request's admission slot is held until the thread ends.
        """
        with self._lock:
            if self.admitted >= self.pool.size + self.queue_size:
                raise ServerBusyError(
                    f"all {self.pool.size} rewriter(s) are busy and {self.queue_size} request(s) wait; retry shortly"
                )
            self.admitted += 1
        budget = self.timeout_s * max(1, units)
        deadline = time.monotonic() + budget
        cancelled = threading.Event()
        state = {"started": False}

        def work(rewriter: Rewriter) -> T:
            with self._lock:
                if cancelled.is_set():  # the caller gave up while this thread waited for a rewriter
                    raise RequestTimeoutError("the request timed out before it ran")
                state["started"] = True
            try:
                with rewriter.engine.stop_when(cancelled):
                    return job(rewriter, cancelled)
            finally:
                self._release()

        try:
            with anyio.fail_after(budget):
                return await anyio.to_thread.run_sync(
                    self.pool.call, work, deadline, abandon_on_cancel=True, limiter=self.limiter
                )
        except (TimeoutError, CancelledError):
            raise RequestTimeoutError(f"no result within {budget:g} s; the query can be used as it is") from None
        finally:
            with self._lock:
                cancelled.set()
                never_ran = not state["started"]
            if never_ran:
                self._release()
