"""HTTP transport: one logical request, its retries and its error mapping.

Standard library only (http.client). The rules are the Go SDK's (package
client):

* every POST carries an ``Idempotency-Key`` (a fresh random one per logical
  call, the same on each retry of it): the server answers a repeated
  submission with the first submission's future, and a repeated training
  client or tenant creation with the first creation's result, instead of
  doing it again, so these are retried on 429, 5xx and lost connections like
  GETs;
* creations the server does not deduplicate (API keys, packages) are
  retried only on 429, which the server answers before doing anything;
* waits are "full jitter" exponential backoff, at least the server's
  ``Retry-After``.
"""

from __future__ import annotations

import http.client
import json
import random
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Set, Tuple

from . import errors

__all__ = ["RetryPolicy", "Transport", "SAFE", "REFUSED_ONLY", "NEVER"]

# What a request may be retried on.
SAFE = "safe"  # repeating has no further effect: 429, 5xx (but 501) and transport errors
REFUSED_ONLY = "refused_only"  # a POST the server does not deduplicate: 429 only
NEVER = "never"  # one try

MAX_RESPONSE_BYTES = 64 << 20
MAX_ERROR_BYTES = 64 << 10
MAX_IDEMPOTENCY_KEY_LEN = 256  # the server's bound (store.MaxIdempotencyKeyLen)

USER_AGENT = "tensafe-python-sdk/1"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently requests are retried.

    ``max_attempts`` is the total number of tries of one request (1: no retry).
    The wait before retry n is drawn uniformly from [0, cap], cap =
    ``base_delay`` · 2^(n-1) up to ``max_delay`` (seconds), unless the server's
    Retry-After asks for longer.
    """

    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def backoff(self, attempt: int, retry_after: Optional[float], rnd: Callable[[], float]) -> float:
        cap = self.base_delay
        for _ in range(1, attempt):
            if cap >= self.max_delay:
                break
            cap *= 2
        cap = min(cap, self.max_delay)
        d = rnd() * cap if cap > 0 else 0.0
        if retry_after is not None and retry_after > d:
            d = retry_after
        return d


def new_idempotency_key() -> str:
    """A random idempotency key (128 bits, hex)."""
    return secrets.token_hex(16)


def _retryable(status: int, mode: str) -> bool:
    if mode == NEVER:
        return False
    if status == 429:
        return True
    return mode == SAFE and status >= 500 and status != 501


class Transport:
    """Sends JSON requests to one server as one API key. Safe for concurrent use (a kept-alive connection per thread)."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        retry: Optional[RetryPolicy] = None,
        timeout: float = 60.0,
        ssl_context: Optional[ssl.SSLContext] = None,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        if not isinstance(base_url, str):
            raise TypeError("base_url: must be a str")
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("base_url %r: must be an absolute http or https URL" % _redact(base_url))
        if u.username is not None or u.password is not None:
            raise ValueError("base_url: must not carry credentials; pass the API key instead")
        if u.query or u.fragment:
            raise ValueError("base_url %r: must not have a query or fragment" % _redact(base_url))
        if not isinstance(api_key, str):
            raise TypeError("api_key: must be a str")
        for i, ch in enumerate(api_key):
            if ch <= " " or ch >= "\x7f":
                # The key is not quoted: it is a secret even when malformed.
                raise ValueError("api_key: character %d is not printable ASCII" % i)
        if retry is None:
            retry = RetryPolicy()
        if retry.max_attempts < 1:
            retry = RetryPolicy(1, retry.base_delay, retry.max_delay)
        self._scheme = u.scheme
        self._host = u.hostname
        self._port = u.port
        self._prefix = u.path.rstrip("/")
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self.retry = retry
        self.timeout = timeout
        self._ssl = ssl_context
        self._ua = user_agent
        self._sleep = sleep
        self._rnd = rnd
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: Set[http.client.HTTPConnection] = set()
        # Kept-alive connections close when the transport is collected or at exit.
        weakref.finalize(self, _close_all, self._lock, self._open)

    def __repr__(self) -> str:  # never shows the key
        return "Transport(%r)" % self.base_url

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._scheme == "https":
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, Any]] = None,
        body: Any = None,
        mode: str = SAFE,
        idempotency_key: Optional[str] = None,
        timeout: Optional[float] = None,
        raw: bool = False,
    ) -> Any:
        """Send one logical request and return its decoded JSON (None for an empty body).

        With ``raw`` the body bytes are returned undecoded. Non-2xx answers raise
        the :class:`tensafe.errors.APIError` subclass of their code.
        """
        payload = None
        if body is not None:
            try:
                payload = json.dumps(body, allow_nan=False, separators=(",", ":")).encode("utf-8")
            except ValueError as e:
                raise ValueError("tensafe: %s %s: encode request: %s" % (method, path, e)) from None
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json", "User-Agent": self._ua}
        if self._key:
            headers["Authorization"] = "Bearer " + self._key
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if method == "POST":
            key = idempotency_key or new_idempotency_key()
            if len(key) > MAX_IDEMPOTENCY_KEY_LEN or not key.isprintable():
                raise ValueError("idempotency_key: must be 1 to %d printable characters" % MAX_IDEMPOTENCY_KEY_LEN)
            headers["Idempotency-Key"] = key
        t = self.timeout if timeout is None else timeout
        last: Optional[BaseException] = None
        attempt = 0
        while True:
            attempt += 1
            retry_after: Optional[float] = None
            try:
                status, rheaders, data = self._once(method, target, headers, payload, t)
            except (OSError, http.client.HTTPException) as e:
                # Messages name the host and path, never a header: the key stays out.
                last = errors.TransportError("tensafe: %s %s: %s" % (method, path, _describe(e)))
                if mode != SAFE:
                    raise last from None
            else:
                if 200 <= status < 300:
                    if raw:
                        return data
                    if not data:
                        return None
                    try:
                        return json.loads(data.decode("utf-8"))
                    except (UnicodeDecodeError, ValueError) as e:
                        raise errors.MalformedResponse(
                            "tensafe: %s %s: decode response: %s" % (method, path, e)
                        ) from None
                err = errors.error_from_envelope(status, data, rheaders)
                if not _retryable(status, mode):
                    raise err
                last, retry_after = err, err.retry_after
            if attempt >= self.retry.max_attempts:
                assert last is not None
                raise last
            self._sleep(self.retry.backoff(attempt, retry_after, self._rnd))

    def stream(
        self,
        path: str,
        begin: Callable[[Any], Callable[[bytes], None]],
        *,
        timeout: Optional[float] = None,
        chunk_size: int = 1 << 20,
    ) -> None:
        """GET ``path`` and pass its 2xx body, in chunks, to a sink.

        ``begin(headers)`` is called when a 2xx answer arrives, on each try, and
        returns the sink: it must start over (a retry after a broken body sends
        the whole body again). Retried like any GET (429, 5xx, lost connections,
        a body cut short); the body is never held in memory whole.
        """
        target = self._prefix + path
        headers = {"Accept": "application/octet-stream, application/json", "User-Agent": self._ua}
        if self._key:
            headers["Authorization"] = "Bearer " + self._key
        t = self.timeout if timeout is None else timeout
        attempt = 0
        while True:
            attempt += 1
            retry_after: Optional[float] = None
            err: errors.TenSafeError
            conn = self._connection(t)
            try:
                try:
                    conn.request("GET", target, headers=headers)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    err = errors.TransportError("tensafe: GET %s: %s" % (path, _describe(e)))
                else:
                    if 200 <= resp.status < 300:
                        sink = begin(resp.headers)
                        broken: Optional[BaseException] = None
                        while True:
                            try:
                                b = resp.read(chunk_size)
                            except (OSError, http.client.HTTPException) as e:
                                broken = e  # IncompleteRead: a body cut short
                                break
                            if not b:
                                break
                            sink(b)  # the sink's own errors (a full disk) are not retried
                        if broken is None:
                            return
                        err = errors.TransportError("tensafe: GET %s: body: %s" % (path, _describe(broken)))
                    else:
                        data = resp.read(MAX_ERROR_BYTES + 1)[:MAX_ERROR_BYTES]
                        rheaders: Any = resp.headers
                        ae = errors.error_from_envelope(resp.status, data, rheaders)
                        if not _retryable(resp.status, SAFE):
                            raise ae
                        err, retry_after = ae, ae.retry_after
            finally:
                conn.close()
            if attempt >= self.retry.max_attempts:
                raise err
            self._sleep(self.retry.backoff(attempt, retry_after, self._rnd))

    def _once(
        self, method: str, target: str, headers: Dict[str, str], payload: Optional[bytes], timeout: float
    ) -> Tuple[int, Any, bytes]:
        # Connections are kept alive, one per thread. A kept-alive connection the
        # server has closed while idle fails before any answer; the request is then
        # sent once more on a fresh connection (as Go's net/http does for requests
        # that carry an Idempotency-Key, as every POST here does).
        for attempt in (0, 1):
            conn, reused = self._take(timeout)
            try:
                conn.request(method, target, body=payload, headers=headers)
                resp = conn.getresponse()
                ok = 200 <= resp.status < 300
                limit = MAX_RESPONSE_BYTES if ok else MAX_ERROR_BYTES
                data = resp.read(limit + 1)
                over = len(data) > limit
                if over or resp.will_close or not resp.isclosed():
                    self._drop(conn)  # unread body or the server's close: never reuse
                else:
                    self._give(conn)
                if over:
                    if ok:
                        raise errors.MalformedResponse("tensafe: response over %d bytes" % limit)
                    data = data[:limit]
                return resp.status, resp.headers, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop(conn)
                if reused and attempt == 0:
                    continue
                raise
            except BaseException:
                self._drop(conn)
                raise
        raise AssertionError("unreachable")

    def _take(self, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and conn.sock is not None:  # None: closed by close()
            conn.timeout = timeout
            conn.sock.settimeout(timeout)
            return conn, True
        conn = self._connection(timeout)
        with self._lock:
            self._open.add(conn)
        return conn, False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.add(conn)
        self._local.conn = conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def close(self) -> None:
        """Close every kept-alive connection (they reopen on the next request)."""
        _close_all(self._lock, self._open)


def _close_all(lock: threading.Lock, conns: Set[http.client.HTTPConnection]) -> None:
    with lock:
        cs = list(conns)
        conns.clear()
    for c in cs:
        c.close()


def _describe(e: BaseException) -> str:
    if isinstance(e, socket.timeout):
        return "timed out"
    s = str(e) or type(e).__name__
    return errors.printable(s, 256)


def _redact(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    if u.password is not None:
        netloc = "%s:xxxxx@%s" % (u.username, u.hostname or "")
        if u.port:
            netloc += ":%d" % u.port
        u = u._replace(netloc=netloc)
    return urllib.parse.urlunsplit(u)
