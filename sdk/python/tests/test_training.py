"""The SDK against a real ``tensafe serve``: DP training, sampling, checkpoints, budget, auth, tenancy."""

from __future__ import annotations

import asyncio
import unittest

from _server import server

import tensafe
from tensafe import (
    AuthenticationError,
    DPConfig,
    FailedPrecondition,
    LoRAConfig,
    NotFound,
    OptimizerConfig,
    PrivacyBudgetExceeded,
    TrainingConfig,
    ValidationError,
)

ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
BOS, EOS, PAD = 256, 257, 258  # tensafe-tiny's byte vocabulary

TEXTS = ["the patient is stable.", "the patient is resting.", "the patient is awake.", "the patient is fine."] * 4


def byte_batch(texts):
    """A right-padded token_ce batch of tensafe-tiny byte tokens: labels -100 on padding."""
    rows = [[BOS] + list(t.encode("utf-8")) + [EOS] for t in texts]
    n = max(len(r) for r in rows)
    return {
        "input_ids": [r + [PAD] * (n - len(r)) for r in rows],
        "labels": [r + [-100] * (n - len(r)) for r in rows],
        "attention_mask": [[1] * len(r) + [0] * (n - len(r)) for r in rows],
    }


def config(sigma=1.0, eps=100.0, dataset=16, batch=16, lr=1e-2):
    return TrainingConfig(
        base_model=tensafe.TINY_MODEL,
        lora_config=LoRAConfig(rank=8, alpha=16, target_modules=ALL_MODULES),
        dp_config=DPConfig(noise_multiplier=sigma, max_grad_norm=1.0, target_epsilon=eps, target_delta=1e-5,
                           dataset_size=dataset, expected_batch_size=batch),
        optimizer=OptimizerConfig(learning_rate=lr, weight_decay=0.0),
        seed=1,
    )


def mean(xs):
    return sum(xs) / len(xs)


class TrainingTest(unittest.TestCase):
    """One trained client shared by the tests that read it (training is the slow part)."""

    @classmethod
    def setUpClass(cls):
        cls.srv = server()
        cls.tenant, cls.key = cls.srv.new_tenant()
        cls.svc = tensafe.ServiceClient(cls.srv.base_url, cls.key)
        cls.batch = byte_batch(TEXTS)
        cls.tc = cls.svc.create_training_client(config())
        cls.loss0 = mean(cls.tc.forward(cls.batch).result().per_example_loss)
        cls.steps = []
        cls.fb = []
        for _ in range(8):
            f = cls.tc.forward_backward(cls.batch)  # pipelined: the step is queued behind it
            s = cls.tc.optim_step()
            cls.fb.append(f.result())
            cls.steps.append(s.result())
        cls.loss1 = mean(cls.tc.forward(cls.batch).result().per_example_loss)

    def test_dp_training_loop(self):
        self.assertLess(self.loss1, self.loss0 - 1.0, "DP fine-tune did not lower the loss")
        self.assertEqual([s.step for s in self.steps], list(range(1, 9)))
        eps = [s.epsilon_spent for s in self.steps]
        self.assertTrue(all(b > a for a, b in zip(eps, eps[1:])), eps)
        for r in self.fb:
            self.assertEqual(len(r.per_example_loss), 16)
            self.assertEqual(r.pending_examples, 16)
            self.assertGreater(r.tokens, 0)
            self.assertTrue(0.0 <= r.fraction_clipped <= 1.0)
        for s in self.steps:
            self.assertEqual(s.examples, 16)
            self.assertAlmostEqual(s.noise_std, 1.0)  # σ·C
        info = self.tc.refresh()
        self.assertEqual(info.step, 8)
        self.assertEqual(info.config["dp_config"]["accountant"], "rdp")

    def test_dp_metrics(self):
        m = self.tc.get_dp_metrics()
        self.assertEqual(m.steps, 8)
        self.assertAlmostEqual(m.epsilon_spent, self.steps[-1].epsilon_spent)
        self.assertAlmostEqual(m.epsilon_remaining, 100.0 - m.epsilon_spent)
        self.assertEqual(m.delta, 1e-5)
        self.assertEqual(m.noise_multiplier, 1.0)
        self.assertEqual(m.sampling_rate, 1.0)
        self.assertEqual(m.accountant, "rdp")

    def test_sample(self):
        r = self.tc.sample(["the patient ", [BOS] + list(b"the ")], max_tokens=8, temperature=1.0, n=2, seed=7)
        self.assertEqual(len(r.samples), 4)
        self.assertEqual([s.prompt_index for s in r.sequences], [0, 0, 1, 1])
        for s in r.sequences:
            self.assertTrue(1 <= len(s.tokens) <= 8)
            self.assertEqual(len(s.logprobs), len(s.tokens))
            self.assertTrue(all(lp <= 0 for lp in s.logprobs))
            self.assertIn(s.finish_reason, ("length", "stop"))
            self.assertEqual(s.completion, s.text)
        g1 = self.tc.sample("the patient is ", max_tokens=12, temperature=0)
        g2 = self.tc.sample("the patient is ", max_tokens=12, temperature=0)
        self.assertEqual(g1.samples[0].tokens, g2.samples[0].tokens)

    def test_dp_certificate(self):
        cert = self.tc.dp_certificate()
        self.assertEqual(cert["format"], "tensafe-dp-certificate/v1")
        self.assertEqual(cert["steps"], 8)
        self.assertEqual(cert["sampling"], "client-declared")
        self.assertAlmostEqual(cert["epsilon"], self.tc.get_dp_metrics().epsilon_spent, places=6)
        raw = self.tc.dp_certificate(raw=True)
        self.assertIsInstance(raw, bytes)
        self.assertNotIn(b" ", raw.split(b'"tensafe_version"')[0])  # canonical: no whitespace

    def test_save_load(self):
        slim = self.tc.save_state("pytest-slim", include_optimizer=False, metadata={"epoch": 3, "note": "slim"})
        loaded = self.svc.create_training_client(config()).load_state(slim.artifact_id)
        self.assertEqual(loaded.metadata, {"epoch": 3, "note": "slim"})
        saved = self.tc.save_state("pytest-ckpt")
        self.assertLess(slim.size, saved.size)  # no AdamW moments
        self.assertTrue(saved.artifact_id)
        self.assertTrue(saved.content_hash.startswith("sha256:"))
        self.assertEqual(saved.step, 8)
        arts = {a.id: a for a in self.svc.list_artifacts()}
        self.assertIn(saved.artifact_id, arts)
        self.assertEqual(arts[saved.artifact_id].name, "pytest-ckpt")
        self.assertEqual(self.svc.download_artifact(saved.artifact_id)[:8], b"TSSVCKP1")

        other = self.svc.create_training_client(config())
        before = other.forward(self.batch).result().logprobs
        loaded = other.load_state(saved.artifact_id)
        self.assertIsNone(loaded.metadata)
        self.assertEqual(loaded.step, 8)
        self.assertAlmostEqual(loaded.epsilon_spent, self.steps[-1].epsilon_spent)
        self.assertEqual(other.get_dp_metrics().steps, 8)
        want = self.tc.forward(self.batch).result().logprobs
        got = other.forward(self.batch).result().logprobs
        self.assertNotEqual(before, want)
        for a, b in zip(want, got):
            for x, y in zip(a, b):
                self.assertAlmostEqual(x, y, places=4)

    def test_save_with_pending_gradients_is_refused(self):
        tc = self.svc.create_training_client(config())
        tc.forward_backward(self.batch).result()
        with self.assertRaises(FailedPrecondition) as cm:
            tc.save_state("never")
        self.assertEqual(cm.exception.code, "failed_precondition")
        self.assertTrue(cm.exception.future_id)

    def test_audit_logs(self):
        ops = [e.operation for e in self.tc.audit_logs()]
        for op in ("training.create_client", "training.forward_backward", "training.optim_step"):
            self.assertIn(op, ops)
        self.assertEqual(ops.count("training.optim_step"), 8)
        self.assertTrue(self.svc.verify_audit()["verified"])
        for e in self.svc.iter_audit_logs():
            self.assertEqual(e.tenant_id, self.tenant.id)
            self.assertNotIn(self.key, repr(e))

    def test_async(self):
        async def run():
            tc = await self.svc.create_training_client_async(config())
            r = await tc.forward_backward_async(self.batch, "token_ce")
            s = await tc.optim_step_async()
            m = await tc.get_dp_metrics_async()
            f = tc.forward(self.batch)
            fr = await f
            return r, s, m, fr

        r, s, m, fr = asyncio.run(run())
        self.assertEqual(len(r.per_example_loss), 16)
        self.assertEqual(s.step, 1)
        self.assertEqual(m.steps, 1)
        self.assertEqual(len(fr.logprobs), 16)


class PolicyTest(unittest.TestCase):
    """Budget, authentication, tenancy, validation and idempotency."""

    @classmethod
    def setUpClass(cls):
        cls.srv = server()
        cls.svc = cls.srv.client()

    def test_budget_exhaustion_raises(self):
        # q = 1, σ = 1: two steps spend ε ≈ 7.08 of 8; a third would spend ≈ 9.01.
        tc = self.svc.create_training_client(config(sigma=1.0, eps=8.0))
        batch = byte_batch(TEXTS)
        for _ in range(2):
            tc.forward_backward(batch).result()
            tc.optim_step().result()
        before = tc.get_dp_metrics()
        self.assertEqual(before.steps, 2)
        with self.assertRaises(PrivacyBudgetExceeded) as cm:
            tc.optim_step().result()
        e = cm.exception
        self.assertEqual((e.code, e.status), ("privacy_budget_exceeded", 409))
        self.assertIsInstance(e, tensafe.APIError)
        after = tc.get_dp_metrics()
        self.assertEqual(after.steps, 2)
        self.assertEqual(after.epsilon_spent, before.epsilon_spent)
        self.assertLessEqual(after.epsilon_spent, 8.0)

    def test_wrong_key_raises_authentication_error(self):
        bad = "ts_notakey_" + "x" * 40
        svc = tensafe.ServiceClient(self.srv.base_url, bad)
        with self.assertRaises(AuthenticationError) as cm:
            svc.create_training_client(config())
        e = cm.exception
        self.assertEqual((e.code, e.status), ("unauthenticated", 401))
        self.assertNotIn(bad, str(e))
        self.assertNotIn(bad, repr(svc))

    def test_other_tenants_ids_are_not_found(self):
        tc = self.svc.create_training_client(config())
        saved = tc.save_state("mine")
        other = self.srv.client()
        with self.assertRaises(NotFound):
            other.get_training_client(tc.id)
        with self.assertRaises(NotFound):
            other.get_artifact(saved.artifact_id)
        with self.assertRaises(NotFound):
            other.download_artifact(saved.artifact_id)
        mine = other.create_training_client(config())
        with self.assertRaises(NotFound) as cm:
            mine.load_state(saved.artifact_id)
        self.assertEqual(cm.exception.code, "not_found")
        # A made-up id answers exactly like another tenant's.
        with self.assertRaises(NotFound):
            other.get_training_client("tc_doesnotexist")

    def test_validation_error_names_the_field(self):
        cfg = config()
        cfg.dp_config.noise_multiplier = 0
        with self.assertRaises(ValidationError) as cm:
            self.svc.create_training_client(cfg)
        self.assertEqual(cm.exception.field, "dp_config.noise_multiplier")
        self.assertEqual(cm.exception.status, 400)
        tc = self.svc.create_training_client(config())
        bad = byte_batch(["ok"])
        bad["labels"][0][1] = 999999
        with self.assertRaises(ValidationError) as cm:
            tc.forward_backward(bad)
        self.assertEqual(cm.exception.field, "batch.labels[0][1]")

    def test_idempotency_key_submits_once(self):
        tc = self.svc.create_training_client(config())
        batch = byte_batch(TEXTS[:4])
        tc.forward_backward(batch).result()
        a = tc.optim_step(idempotency_key="pytest-step-1")
        b = tc.optim_step(idempotency_key="pytest-step-1")
        self.assertEqual(a.id, b.id)
        self.assertEqual(a.result().step, 1)
        self.assertEqual(tc.get_dp_metrics().steps, 1)

    def test_concurrent_use_of_one_client(self):
        import concurrent.futures

        tc = self.svc.create_training_client(config())
        batch = byte_batch(TEXTS[:2])

        def work(i):
            if i % 4 == 0:
                return len(tc.forward(batch).result().logprobs)
            return tc.get_dp_metrics().steps

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = list(ex.map(work, range(64)))
        self.assertEqual(got, [2 if i % 4 == 0 else 0 for i in range(64)])

        async def gather():
            return await asyncio.gather(*(tc.forward_async(batch) for _ in range(6)))

        self.assertEqual([len(r.per_example_loss) for r in asyncio.run(gather())], [2] * 6)

    def test_viewer_key_may_not_train(self):
        viewer = self.srv.client(role="viewer")
        with self.assertRaises(tensafe.PermissionDenied) as cm:
            viewer.create_training_client(config())
        self.assertEqual((cm.exception.code, cm.exception.status), ("permission_denied", 403))

    def test_future_handle(self):
        tc = self.svc.create_training_client(config())
        f = tc.forward_backward(byte_batch(TEXTS[:2]))
        self.assertEqual(f.state, "queued")
        with self.assertRaises(tensafe.FutureTimeoutError):
            f.result(timeout=0)
        r = f.result(timeout=120)
        self.assertTrue(f.done())
        self.assertEqual(f.state, "succeeded")
        self.assertIsNone(f.exception())
        self.assertEqual(len(r.per_example_loss), 2)
        again = self.svc.future(f.id)
        self.assertTrue(again.done())


if __name__ == "__main__":
    unittest.main()
