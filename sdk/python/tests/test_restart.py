"""The SDK across a kill -9 and restart of ``tensafe serve``: cut-off futures raise ServerRestarted, budget is kept."""

from __future__ import annotations

import unittest

from _server import Server

import tensafe
from test_training import TEXTS, byte_batch, config


class RestartTest(unittest.TestCase):
    def test_futures_cut_off_by_a_restart(self):
        srv = Server()  # its own server: this test kills it
        self.addCleanup(srv.stop)
        _, key = srv.new_tenant()
        # Patient retries: the server is down for a moment between kill and restart.
        svc = tensafe.ServiceClient(srv.base_url, key, retry=tensafe.RetryPolicy(max_attempts=40, base_delay=0.1, max_delay=0.5))
        self.addCleanup(svc.close)
        tc = svc.create_training_client(config())
        batch = byte_batch(TEXTS)
        tc.forward_backward(batch).result()
        tc.optim_step().result()
        eps = tc.get_dp_metrics().epsilon_spent

        queued = [tc.forward_backward(batch) for _ in range(24)]
        srv.kill9()
        srv.restart()

        cut = done = 0
        for h in queued:
            try:
                h.result(timeout=120)
                done += 1
            except tensafe.ServerRestarted as e:
                self.assertEqual((e.code, e.status, e.future_id), ("server_restarted", 503, h.id))
                cut += 1
        self.assertGreater(cut, 0, "no operation was cut off (all %d finished before the kill)" % done)
        self.assertEqual(cut + done, len(queued))

        # The budget survives the restart; the adapter does not, until load_state.
        m = tc.get_dp_metrics()
        self.assertEqual((m.steps, m.epsilon_spent), (1, eps))
        with self.assertRaises(tensafe.FailedPrecondition):
            tc.forward_backward(batch).result()


if __name__ == "__main__":
    unittest.main()
