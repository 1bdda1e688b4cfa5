"""A real ``tensafe serve`` for the tests: started once, on a loopback port, in a temporary data dir.

The binary is ``$TENSAFE_BIN`` (scripts/python-tests.sh builds it), or built
here with ``go build`` from the repository when that is unset. The server
prints ``tensafe serving on http://ADDR``; it listens on 127.0.0.1:0, so the
kernel picks a free port and nothing races for it. The bootstrap operator
admin key is read from <data-dir>/admin.key, as an operator would.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SDK_SRC = os.path.join(os.path.dirname(HERE), "src")
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
if SDK_SRC not in sys.path:
    sys.path.insert(0, SDK_SRC)

import tensafe  # noqa: E402

_SERVING = re.compile(r"tensafe serving on (http://\S+)")


_built: List[str] = []
_built_lock = threading.Lock()


def binary() -> str:
    """``$TENSAFE_BIN``, or a ``tensafe`` built once with ``go build`` (removed at exit)."""
    env = os.environ.get("TENSAFE_BIN")
    if env:
        return env
    with _built_lock:
        if not _built:
            d = tempfile.mkdtemp(prefix="tensafe-pytest-bin-")
            atexit.register(shutil.rmtree, d, True)
            out = os.path.join(d, "tensafe")
            subprocess.run(["go", "build", "-o", out, "./cmd/tensafe"], cwd=REPO, check=True)
            _built.append(out)
        return _built[0]


class Server:
    """One running ``tensafe serve``."""

    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="tensafe-pytest-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.stderr_path = os.path.join(self.tmp, "serve.stderr")
        self._stderr = open(self.stderr_path, "ab")
        self.base_url = self._start("127.0.0.1:0")
        with open(os.path.join(self.data_dir, "admin.key")) as f:
            self.admin_key = f.read().strip()
        self.admin = tensafe.ServiceClient(self.base_url, self.admin_key)
        self._n = 0
        self._lock = threading.Lock()

    def _start(self, addr: str) -> str:
        self.proc = subprocess.Popen(
            [binary(), "serve", "--data-dir", self.data_dir, "--addr", addr, "--shutdown-grace", "10s"],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
        )
        return self._wait_serving(timeout=120)

    def kill9(self) -> None:
        """SIGKILL the server: no shutdown, operations in flight are cut off."""
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        """Start the server again on the same data dir and address."""
        addr = self.base_url[len("http://"):]
        if self._start(addr) != self.base_url:
            raise RuntimeError("tensafe serve came back on another address")

    def _wait_serving(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        lines: List[str] = []
        result: List[str] = []

        out = self.proc.stdout

        def read() -> None:
            with out:  # closed at EOF, when the process has gone
                for raw in out:
                    line = raw.decode("utf-8", "replace")
                    lines.append(line)
                    m = _SERVING.search(line)
                    if m and not result:
                        result.append(m.group(1))

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result:
                return result[0]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("tensafe serve did not start: stdout %r, stderr tail %r" % ("".join(lines), self.stderr_tail()))

    def stderr_tail(self, n: int = 4000) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def new_tenant(self, role: str = "trainer") -> Tuple[tensafe.Tenant, str]:
        """A fresh tenant and an API key of it with ``role``."""
        with self._lock:
            self._n += 1
            n = self._n
        t = self.admin.create_tenant("pytest-%d" % n)
        k = self.admin.create_api_key(t.id, role)
        assert k.token
        return t, k.token

    def client(self, role: str = "trainer") -> tensafe.ServiceClient:
        """A ServiceClient of a fresh tenant."""
        _, key = self.new_tenant(role)
        return tensafe.ServiceClient(self.base_url, key)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


_server: Optional[Server] = None
_server_lock = threading.Lock()


def server() -> Server:
    """The test run's server, started on first use and stopped at exit."""
    global _server
    with _server_lock:
        if _server is None:
            _server = Server()
            atexit.register(_server.stop)
        return _server
