"""Futures of operations submitted on a training client.

The server queues every training operation and answers its submission with a
future (``{"id": "op_…", "state": "queued", …}``); ``GET
/api/v1/futures/{id}?wait=S`` long-polls it. A :class:`FutureHandle` is that
future on the client side, with the interface of ``concurrent.futures``:
``result(timeout)``, ``done()``, ``exception(timeout)`` — and ``await
handle`` in asyncio code.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, Generator, Generic, Optional, TypeVar

from . import errors
from ._transport import Transport

__all__ = ["FutureHandle"]

T = TypeVar("T")

POLL_WAIT = 30.0  # seconds one long-poll asks the server to hold the request (its bound is 60)
_TERMINAL = ("succeeded", "failed")


class FutureHandle(Generic[T]):
    """An operation on the server; ``result()`` waits for it and returns its typed result.

    A failed operation raises the :class:`tensafe.errors.APIError` subclass of its
    error code (``PrivacyBudgetExceeded``, ``FailedPrecondition``…) with
    ``future_id`` set. Handles are safe to share between threads.
    """

    def __init__(
        self,
        transport: Transport,
        submitted: Dict[str, Any],
        decode: Callable[[Any], T],
        *,
        poll_wait: float = POLL_WAIT,
    ) -> None:
        fid = submitted.get("id") if isinstance(submitted, dict) else None
        if not isinstance(fid, str) or not fid:
            raise errors.MalformedResponse("tensafe: submitted operation has no id")
        self._t = transport
        self._decode = decode
        self._poll_wait = max(1.0, min(float(poll_wait), 60.0))
        self._lock = threading.Lock()
        self._state: Dict[str, Any] = submitted
        self.id: str = fid
        self.kind: str = str(submitted.get("kind", ""))

    def __repr__(self) -> str:
        return "FutureHandle(id=%r, kind=%r, state=%r)" % (self.id, self.kind, self.state)

    @property
    def state(self) -> str:
        """The last known state: queued, running, succeeded or failed."""
        return str(self._state.get("state", ""))

    def _finished(self) -> bool:
        return self._state.get("state") in _TERMINAL

    def _fetch(self, wait: float) -> Dict[str, Any]:
        path = "/api/v1/futures/" + urllib.parse.quote(self.id, safe="")
        query = {"wait": "%g" % wait} if wait > 0 else None
        st = self._t.request("GET", path, query=query, timeout=wait + self._t.timeout)
        if not isinstance(st, dict) or st.get("id") != self.id:
            raise errors.MalformedResponse("tensafe: future %s: unexpected answer" % self.id)
        with self._lock:
            if not self._finished():
                self._state = st
            return self._state

    def done(self) -> bool:
        """Whether the operation has finished (one GET, no waiting, unless already known)."""
        if self._finished():
            return True
        return self._fetch(0)["state"] in _TERMINAL

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Wait until the operation has finished and return its final future object (without raising for a failure)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        idle = 0
        while not self._finished():
            wait = self._poll_wait
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise errors.FutureTimeoutError(
                        "tensafe: operation %s (%s) not finished after %gs; it goes on on the server"
                        % (self.id, self.kind, timeout or 0.0)
                    )
                wait = min(wait, left)
            start = time.monotonic()
            self._fetch(wait)
            # A server that ignores wait answers at once: back off, never spin.
            if not self._finished() and time.monotonic() - start < min(0.5, wait / 2):
                idle += 1
                time.sleep(min(0.025 * (2 ** min(idle, 6)), 1.0))
            else:
                idle = 0
        return self._state

    def exception(self, timeout: Optional[float] = None) -> Optional[errors.APIError]:
        """The error of a failed operation (None if it succeeded), waiting for it to finish."""
        st = self.wait(timeout)
        if st.get("state") == "failed":
            return errors.error_from_future(st)
        return None

    def result(self, timeout: Optional[float] = None) -> T:
        """Wait for the operation and return its result; raise its error if it failed.

        ``timeout`` (seconds, None: no limit) raises ``FutureTimeoutError`` when it
        runs out; the operation goes on on the server.
        """
        st = self.wait(timeout)
        if st.get("state") == "failed":
            raise errors.error_from_future(st)
        if "result" not in st:
            raise errors.MalformedResponse("tensafe: operation %s succeeded without a result" % self.id)
        return self._decode(st["result"])

    async def result_async(self, timeout: Optional[float] = None) -> T:
        """``result`` for asyncio code (the wait runs in the loop's default executor)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.result, timeout)

    def __await__(self) -> Generator[Any, None, T]:
        return self.result_async().__await__()
