"""Server-sampled training from Python against a real ``tensafe serve``: datasets and train_step."""

from __future__ import annotations

import asyncio
import math
import unittest

from _server import server

import tensafe
from tensafe import DPConfig, FailedPrecondition, LoRAConfig, NotFound, OptimizerConfig, TrainingConfig, ValidationError

BOS = 256  # tensafe-tiny's byte vocabulary


def rows(n):
    return [{"input_ids": [BOS] + list(("row %d of the notes" % i).encode())} for i in range(n)]


def server_config(dataset_id, batch):
    return TrainingConfig(
        base_model=tensafe.TINY_MODEL,
        lora_config=LoRAConfig(rank=4, alpha=8),
        dp_config=DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, target_epsilon=50.0, target_delta=1e-5,
                           expected_batch_size=batch, sampling="server", dataset_id=dataset_id),
        optimizer=OptimizerConfig(learning_rate=1e-2),
        seed=1,
    )


def bernstein(m, q):
    """t with P(|S - mq| >= t) < 1e-6 for S ~ Binomial(m, q) (Bernstein's inequality)."""
    l = math.log(2e6)
    b = 2 * l / 3
    return (b + math.sqrt(b * b + 8 * l * m * q * (1 - q))) / 2


class DatasetTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = server()
        _, key = cls.srv.new_tenant()
        _, other = cls.srv.new_tenant()
        cls.svc = tensafe.ServiceClient(cls.srv.base_url, key)
        cls.other = tensafe.ServiceClient(cls.srv.base_url, other)

    def test_train_step_enforces_q(self):
        n, batch, steps = 20, 5, 12
        ds = self.svc.create_dataset(rows(n), name="notes")
        self.assertEqual(ds.rows, n)
        self.assertTrue(ds.content_hash.startswith("sha256:"))
        self.assertEqual(self.svc.get_dataset(ds.id).content_hash, ds.content_hash)
        with self.assertRaises(NotFound):
            self.other.get_dataset(ds.id)
        tc = self.svc.create_training_client(server_config(ds.id, batch))
        self.assertEqual(tc.info.config["dp_config"]["dataset_size"], n)
        with self.assertRaises(FailedPrecondition):
            tc.forward_backward({"input_ids": [[BOS, 97]], "labels": [[BOS, 97]]})
        results = [tc.train_step() for _ in range(steps)]  # pipelined futures
        drawn = [r.result() for r in results]
        self.assertEqual([r.step for r in drawn], list(range(1, steps + 1)))
        for r in drawn:
            self.assertEqual(r.dataset_rows, n)
            self.assertAlmostEqual(r.sampling_rate, batch / n)
        total = sum(r.examples for r in drawn)
        q = batch / n
        self.assertLess(abs(total - steps * n * q), bernstein(steps * n, q), "draws %d" % total)
        m = tc.get_dp_metrics()
        self.assertEqual(m.sampling_source, "server-poisson")
        self.assertEqual(m.steps, steps)
        cert = tc.dp_certificate()
        self.assertEqual(cert["sampling"], "server-poisson")
        self.assertEqual(cert["dataset_fingerprint"], ds.content_hash)
        r = asyncio.run(tc.train_step_async())
        self.assertEqual(r.step, steps + 1)
        self.svc.delete_dataset(ds.id)
        with self.assertRaises(FailedPrecondition):
            tc.train_step()

    def test_text_rows(self):
        ds = self.svc.create_dataset([{"text": "the notes"}, {"prompt": "Q: ", "completion": "A."}],
                                     base_model=tensafe.TINY_MODEL)
        self.assertEqual((ds.rows, ds.base_model), (2, tensafe.TINY_MODEL))
        tc = self.svc.create_training_client(server_config(ds.id, 1))
        self.assertEqual(tc.train_step().result().step, 1)
        with self.assertRaises(ValidationError) as cm:
            self.svc.create_dataset([{"text": "x"}])
        self.assertEqual(cm.exception.field, "base_model")

    def test_bad_configs(self):
        ds = asyncio.run(self.svc.create_dataset_async(rows(4)))
        with self.assertRaises(NotFound) as cm:
            self.other.create_training_client(server_config(ds.id, 2))
        self.assertEqual(cm.exception.field, "dp_config.dataset_id")
        cfg = server_config(ds.id, 2)
        cfg.dp_config.dataset_size = 4
        with self.assertRaises(ValidationError) as cm:
            self.svc.create_training_client(cfg)
        self.assertEqual(cm.exception.field, "dp_config.dataset_size")
        with self.assertRaises(ValidationError) as cm:
            self.svc.create_dataset([{"input_ids": [1, 2], "labels": [1]}])
        self.assertEqual(cm.exception.field, "examples[0].labels")
        declared = self.svc.create_training_client(TrainingConfig(
            dp_config=DPConfig(dataset_size=10, expected_batch_size=2), lora_config=LoRAConfig(rank=2, alpha=4)))
        with self.assertRaises(FailedPrecondition):
            declared.train_step()


if __name__ == "__main__":
    unittest.main()
