"""Retries, backoff, idempotency keys and error decoding of the transport, against a scripted local HTTP server.

The real server cannot be made to answer 503 or drop a connection on cue, so
these tests run a stdlib HTTP server on loopback that answers a script of
responses and records every request it got.
"""

from __future__ import annotations

import http.server
import json
import threading
import unittest

import _server  # noqa: F401  (puts the SDK on sys.path)

from tensafe import errors
from tensafe._transport import NEVER, REFUSED_ONLY, RetryPolicy, Transport

KEY = "ts_secretprefix_supersecretvalue0123456789"


class Scripted(http.server.ThreadingHTTPServer):
    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = []  # (status, headers, body bytes) or "drop"
        self.requests = []  # (method, path, headers dict, body)
        self.peers = []  # client address of each request: one per connection
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Go server

    def log_message(self, *a):
        pass

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.requests.append((self.command, self.path, dict(self.headers), body))
        self.server.peers.append(self.client_address)
        step = self.server.script.pop(0) if self.server.script else (200, {}, b"{}")
        close_after = False
        if step == "close_after":  # answer, then close the kept-alive connection silently
            step, close_after = (200, {}, b"{}"), True
        if step == "drop":
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        status, headers, data = step
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if close_after:
            self.wfile.flush()
            self.close_connection = True

    do_GET = do_POST = do_DELETE = _any


def envelope(code, message="m", field=None):
    e = {"code": code, "message": message}
    if field:
        e["field"] = field
    return json.dumps({"error": e}).encode()


class TransportTest(unittest.TestCase):
    def setUp(self):
        self.srv = Scripted()
        self.sleeps = []
        self.t = Transport(self.srv.url, KEY, retry=RetryPolicy(4, 0.2, 1.0), sleep=self.sleeps.append, rnd=lambda: 1.0)

    def tearDown(self):
        self.t.close()
        self.srv.shutdown()
        self.srv.server_close()

    def test_submission_retried_on_503_with_one_idempotency_key(self):
        self.srv.script = [(503, {}, envelope("unavailable")), (502, {}, b"bad gateway"), (200, {}, b'{"id": "op_1"}')]
        out = self.t.request("POST", "/api/v1/x", body={"a": 1})
        self.assertEqual(out, {"id": "op_1"})
        self.assertEqual(len(self.srv.requests), 3)
        keys = {r[2].get("Idempotency-Key") for r in self.srv.requests}
        self.assertEqual(len(keys), 1)
        self.assertTrue(next(iter(keys)))
        self.assertEqual(self.srv.requests[0][2]["Authorization"], "Bearer " + KEY)
        self.assertEqual(json.loads(self.srv.requests[2][3]), {"a": 1})
        # Full jitter with rnd = 1: the caps, doubling from base_delay.
        self.assertEqual(self.sleeps, [0.2, 0.4])

    def test_keep_alive_and_idle_close(self):
        for _ in range(3):
            self.t.request("GET", "/x")
        self.assertEqual(len(set(self.srv.peers)), 1, "requests did not share a kept-alive connection")
        # The server closes the kept-alive connection after answering: the next
        # request, even a creation that is never retried, goes out on a new one.
        self.srv.script = ["close_after", (201, {}, b'{"id": "tc_1"}')]
        self.t.request("GET", "/x")
        self.assertEqual(self.t.request("POST", "/create", body={}, mode=REFUSED_ONLY), {"id": "tc_1"})
        self.assertEqual(len(set(self.srv.peers)), 2)
        self.assertEqual(self.sleeps, [])
        self.t.close()
        self.t.request("GET", "/x")
        self.assertEqual(len(set(self.srv.peers)), 3)

    def test_lost_connection_retried_for_submissions(self):
        self.srv.script = ["drop", (202, {}, b'{"id": "op_2"}')]
        self.assertEqual(self.t.request("POST", "/x", body={}), {"id": "op_2"})
        self.assertEqual(len(self.sleeps), 1)
        keys = {r[2].get("Idempotency-Key") for r in self.srv.requests}
        self.assertEqual(len(keys), 1)

    def test_retry_after_is_honoured(self):
        self.srv.script = [(429, {"Retry-After": "3"}, envelope("rate_limited")), (200, {}, b"{}")]
        self.t.request("GET", "/x")
        self.assertEqual(self.sleeps, [3.0])

    def test_rate_limited_after_retries(self):
        self.srv.script = [(429, {"Retry-After": "1"}, envelope("rate_limited", "slow down"))] * 4
        with self.assertRaises(errors.RateLimited) as cm:
            self.t.request("GET", "/x")
        self.assertEqual(cm.exception.retry_after, 1.0)
        self.assertEqual(cm.exception.status, 429)
        self.assertEqual(len(self.srv.requests), 4)

    def test_creation_not_retried_on_5xx_but_on_429(self):
        self.srv.script = [(500, {}, envelope("internal"))]
        with self.assertRaises(errors.ServerError):
            self.t.request("POST", "/create", body={}, mode=REFUSED_ONLY)
        self.assertEqual(len(self.srv.requests), 1)
        self.srv.script = ["drop"]
        self.t.close()  # a fresh connection: a drop there may have reached the server
        with self.assertRaises(errors.TransportError) as cm:
            self.t.request("POST", "/create", body={}, mode=REFUSED_ONLY)
        self.assertNotIn(KEY, str(cm.exception))
        self.assertEqual(len(self.srv.requests), 2)
        self.srv.script = [(429, {}, envelope("rate_limited")), (201, {}, b'{"id": "tc_1"}')]
        self.assertEqual(self.t.request("POST", "/create", body={}, mode=REFUSED_ONLY), {"id": "tc_1"})

    def test_never_mode_tries_once(self):
        self.srv.script = [(503, {}, envelope("unavailable"))]
        with self.assertRaises(errors.Unavailable):
            self.t.request("GET", "/readyz", mode=NEVER)
        self.assertEqual(len(self.srv.requests), 1)

    def test_client_errors_not_retried_and_typed(self):
        cases = [
            (400, "invalid_argument", errors.ValidationError),
            (401, "unauthenticated", errors.AuthenticationError),
            (403, "permission_denied", errors.PermissionDenied),
            (404, "not_found", errors.NotFound),
            (409, "privacy_budget_exceeded", errors.PrivacyBudgetExceeded),
            (409, "failed_precondition", errors.FailedPrecondition),
            (413, "request_too_large", errors.RequestTooLarge),
        ]
        for status, code, cls in cases:
            with self.subTest(code=code):
                n = len(self.srv.requests)
                self.srv.script = [(status, {"X-Request-Id": "rid-1"}, envelope(code, "why", "dp_config.x"))]
                with self.assertRaises(cls) as cm:
                    self.t.request("POST", "/x", body={})
                e = cm.exception
                self.assertEqual((e.status, e.code, e.message, e.field, e.request_id), (status, code, "why", "dp_config.x", "rid-1"))
                self.assertEqual(len(self.srv.requests), n + 1)
                self.assertIn("dp_config.x", str(e))

    def test_non_envelope_error_body(self):
        self.srv.script = [(404, {}, b"<html>\x00nope</html>")]
        with self.assertRaises(errors.NotFound) as cm:
            self.t.request("GET", "/x")
        self.assertEqual(cm.exception.code, "not_found")
        self.assertNotIn("\x00", cm.exception.message)

    def test_malformed_success(self):
        self.srv.script = [(200, {}, b"{not json")]
        with self.assertRaises(errors.MalformedResponse):
            self.t.request("GET", "/x")

    def test_own_idempotency_key(self):
        self.srv.script = [(202, {}, b'{"id": "op"}')]
        self.t.request("POST", "/x", body={}, idempotency_key="step-7")
        self.assertEqual(self.srv.requests[-1][2]["Idempotency-Key"], "step-7")
        with self.assertRaises(ValueError):
            self.t.request("POST", "/x", body={}, idempotency_key="x" * 257)

    def test_bad_construction(self):
        for url in ["ftp://h", "127.0.0.1:8080", "http://user:pw@h:1"]:
            with self.assertRaises(ValueError) as cm:
                Transport(url, KEY)
            self.assertNotIn("pw", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            Transport(self.srv.url, "ts_has space secret")
        self.assertNotIn("secret", str(cm.exception))
        self.assertNotIn(KEY, repr(self.t))

    def test_nan_refused_before_sending(self):
        with self.assertRaises(ValueError):
            self.t.request("POST", "/x", body={"x": float("nan")})
        self.assertEqual(self.srv.requests, [])


class ErrorsTest(unittest.TestCase):
    def test_parse_retry_after(self):
        self.assertEqual(errors.parse_retry_after("7"), 7.0)
        self.assertEqual(errors.parse_retry_after("999999"), errors.MAX_RETRY_AFTER)
        self.assertIsNone(errors.parse_retry_after("soon"))
        self.assertIsNone(errors.parse_retry_after(None))
        self.assertEqual(errors.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 5), 5.0)
        self.assertEqual(errors.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 5), 0.0)

    def test_future_error(self):
        e = errors.error_from_future({"id": "op_1", "kind": "optim_step", "state": "failed",
                                      "error": {"code": "privacy_budget_exceeded", "message": "ε 9 > 8"}})
        self.assertIsInstance(e, errors.PrivacyBudgetExceeded)
        self.assertEqual((e.status, e.future_id, e.kind), (409, "op_1", "optim_step"))
        e = errors.error_from_future({"id": "op_2", "kind": "sample", "state": "failed", "error": {"code": "server_restarted"}})
        self.assertIsInstance(e, errors.ServerRestarted)
        self.assertIsInstance(e, errors.Unavailable)
        e = errors.error_from_future({"id": "op_3", "state": "failed", "error": {"code": "brand_new_code"}})
        self.assertIs(type(e), errors.APIError)
        self.assertEqual(e.code, "brand_new_code")


if __name__ == "__main__":
    unittest.main()
