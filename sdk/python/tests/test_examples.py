"""The quickstart example run as the README says, as a separate process, against a real ``tensafe serve``."""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from _server import HERE, SDK_SRC, server

EXAMPLES = os.path.join(os.path.dirname(HERE), "examples")


class QuickstartTest(unittest.TestCase):
    def test_quickstart_runs(self):
        srv = server()
        env = dict(os.environ, PYTHONPATH=SDK_SRC)
        env.pop("TENSAFE_API_KEY", None)
        p = subprocess.run(
            [sys.executable, os.path.join(EXAMPLES, "quickstart.py"), "--data-dir", srv.data_dir,
             "--base-url", srv.base_url, "--steps", "6"],
            env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stderr[-3000:])
        out = p.stdout
        for want in ("training client tc_", "step   6", "Privacy spent: ε=", "sample (greedy):", "encrypted checkpoint: artifact art_"):
            self.assertIn(want, out)
        self.assertNotIn(srv.admin_key, out + p.stderr)

    def test_quickstart_without_a_key_says_what_to_do(self):
        env = dict(os.environ, PYTHONPATH=SDK_SRC)
        env.pop("TENSAFE_API_KEY", None)
        p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "quickstart.py"), "--base-url", "http://127.0.0.1:9"],
                           env=env, capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("--data-dir", p.stderr)


if __name__ == "__main__":
    unittest.main()
