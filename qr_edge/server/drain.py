"""Stopping the service without dropping work: on SIGTERM, requests in flight finish, new ones get 503 with
``Retry-After`` (a load balancer retries them elsewhere), and the process exits 0 once none is left."""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType

import uvicorn

log = logging.getLogger("qr_edge.server")


class DrainState:
    """Shared by the app's gate (which counts requests and refuses new ones while draining) and the server."""

    def __init__(self) -> None:
        self.draining = False
        self.in_flight = 0  # HTTP requests inside the app; only changed on the event loop


class DrainingServer(uvicorn.Server):
    """uvicorn's server, but SIGTERM drains first: the listener stays open answering 503 until the requests in
    flight are done (at most ``grace_s``), then uvicorn's own shutdown runs. A second signal, or SIGINT, stops
    at once as uvicorn does. Exits 0 after a drain (uvicorn alone re-raises SIGTERM when it is done)."""

    def __init__(self, config: uvicorn.Config, drain: DrainState, grace_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain.draining:
            super().handle_exit(sig, frame)
            return
        self.drain.draining = True
        log.info("SIGTERM: %d request(s) in flight finish, new ones get 503", self.drain.in_flight)
        threading.Thread(target=self._exit_when_idle, name="qr-edge-drain", daemon=True).start()

    def _exit_when_idle(self) -> None:
        deadline = time.monotonic() + self.grace_s
        while self.drain.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.drain.in_flight:
            log.warning("%d request(s) still running after %.0f s; stopping anyway", self.drain.in_flight, self.grace_s)
        self.should_exit = True
