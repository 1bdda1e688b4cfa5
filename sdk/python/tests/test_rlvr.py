"""RL and custom losses against a real ``tensafe serve``: the RL example, PPO with a reference, resume, forward_backward_custom."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import unittest

from _server import HERE, server

import tensafe
from tensafe import rlvr
from test_training import ALL_MODULES, TEXTS, byte_batch, config

sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))
import rlvr_basic  # noqa: E402


def mean(xs):
    return sum(xs) / len(xs)


class RLExampleTest(unittest.TestCase):
    def test_rl_example_raises_mean_reward_and_resumes(self):
        srv = server()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            out = rlvr_basic.main(["--base-url", srv.base_url, "--data-dir", srv.data_dir, "--steps", "4"])
        self.assertIn("mean reward: first step", printed.getvalue())
        h = out["history"]
        self.assertEqual(len(h), 4)
        self.assertGreater(mean(h[-2:]), h[0] + 0.3, "REINFORCE did not raise the mean reward: %s" % h)

        # The trainer's state travels in the checkpoint's metadata: a new trainer
        # on a new client resumes exactly (same step, baseline, history, prompts).
        old = out["trainer"]
        svc = old.service
        fresh = svc.create_training_client(tensafe.TrainingConfig(
            base_model="tensafe-tiny", lora_config=tensafe.LoRAConfig(rank=8, alpha=16, target_modules=ALL_MODULES),
            dp_config=tensafe.DPConfig(noise_multiplier=0.3, target_epsilon=500.0, dataset_size=32, expected_batch_size=32)))
        cfg = rlvr.TrainerConfig(prompts=list(old.config.prompts), prompts_per_step=old.config.prompts_per_step,
                                 sampling=old.config.sampling, advantage=rlvr.AdvantageConfig(baseline="group_mean"), seed=99)
        resumed = rlvr.Trainer(svc, fresh, "nonblank_fraction", cfg)
        resumed.load(out["artifact_id"])
        a, b = old.state(), resumed.state()
        self.assertEqual((b.step, b.reward_history, b.rng), (a.step, a.reward_history, a.rng))
        self.assertEqual(fresh.get_dp_metrics().steps, 4)
        self.assertEqual(old._pcg.perm(4), resumed._pcg.perm(4))
        ppo = rlvr.Trainer(svc, fresh, "nonblank_fraction", rlvr.TrainerConfig(prompts=cfg.prompts, algorithm=rlvr.PPO))
        with self.assertRaises(ValueError):
            ppo.restore({"rlvr": a.to_metadata()["rlvr"]})


class PPOTest(unittest.TestCase):
    def test_ppo_with_reference_kl(self):
        srv = server()
        svc = srv.client()
        # The privacy unit is the prompt: the DP config counts the 2 prompts (2 per step: q = 1).
        cfg = config(sigma=0.5, eps=500.0, dataset=2, batch=2)
        policy = svc.create_training_client(cfg)
        reference = svc.create_training_client(cfg)
        reward = rlvr.resolve_rewards([{"type": "nonblank_fraction"} if "nonblank_fraction" in rlvr.reward_names()
                                       else (lambda p, c: float(len(c.strip())) / max(len(c), 1))])
        tr = rlvr.Trainer(svc, policy, reward, rlvr.TrainerConfig(
            algorithm=rlvr.PPO, prompts=[rlvr.Prompt("Q: hi. A: "), rlvr.Prompt("Q: yo. A: ")], prompts_per_step=2,
            sampling=rlvr.RolloutParams(n=4, max_tokens=6), advantage=rlvr.AdvantageConfig(baseline="none"),
            epochs=2, kl_coef=0.1, reference=reference, keep_zero_advantage=True, seed=3))
        r = tr.step()
        self.assertEqual(len(r.updates), 2)
        self.assertEqual((r.rows, r.examples, r.prompts), (8, 2, [0, 1]))
        for u in r.updates:
            self.assertIsNotNone(u.forward_backward)
            # One DP example per prompt: its 4 completions share one norm and one clip.
            self.assertEqual(len(u.forward_backward.per_example_loss), 2)
            self.assertEqual(len(u.forward_backward.per_example_grad_norms or []), 2)
            for k in ("clip_fraction", "approx_kl", "ratio_mean"):
                self.assertIn(k, u.forward_backward.metrics or {})
        # First epoch is on-policy: the importance ratio is 1.
        self.assertAlmostEqual(r.updates[0].forward_backward.metrics["ratio_mean"], 1.0, places=3)
        self.assertEqual(policy.get_dp_metrics().steps, 2)
        self.assertEqual(reference.get_dp_metrics().steps, 0)
        self.assertEqual(tr.loss()["type"], "ppo")
        self.assertEqual(tr.loss()["kwargs"]["group_size"], 4)


class PoissonTest(unittest.TestCase):
    def test_poisson_steps_and_noise_only(self):
        # q = 1/16: each step uses exactly the seeded Poisson draw (tests only), a drawn prompt reaches the
        # server as one example, and an empty draw is a noise-only optim_step the accountant counts.
        srv = server()
        svc = srv.client()
        prompts = [rlvr.Prompt("Q%d: " % i) for i in range(16)]
        policy = svc.create_training_client(config(sigma=1.0, eps=500.0, dataset=16, batch=1))
        seed = b"python tests only"
        tr = rlvr.Trainer(svc, policy, lambda p, c: float(len(c)), rlvr.TrainerConfig(
            prompts=prompts, prompts_per_step=1, sampling=rlvr.RolloutParams(n=2, max_tokens=3),
            advantage=rlvr.AdvantageConfig(baseline="none"), keep_zero_advantage=True, sampler_seed=seed))
        draws = [rlvr.poisson_sample(1 / 16, 16, seed, s) for s in range(30)]
        last = next(s for s, d in enumerate(draws) if not d)
        for s in range(last + 1):
            r = tr.step()
            self.assertEqual(r.prompts, draws[s])
            self.assertEqual(len(r.updates), 1)
            self.assertGreater(r.updates[0].optim_step.noise_std, 0)
            if not draws[s]:
                self.assertIsNone(r.updates[0].forward_backward)
                self.assertEqual((r.rows, r.examples, r.trajectories), (0, 0, []))
            else:
                self.assertEqual((r.rows, r.examples), (2 * len(draws[s]), len(draws[s])))
                self.assertEqual(len(r.updates[0].forward_backward.per_example_loss), len(draws[s]))
        self.assertEqual(tr.state().step, last + 1)
        self.assertEqual(len(tr.state().reward_history), last)  # the empty step adds no reward
        m = policy.get_dp_metrics()
        self.assertEqual(m.steps, last + 1)
        self.assertAlmostEqual(m.sampling_rate, 1 / 16)
        # A dp_config understating q is refused before anything runs.
        with self.assertRaisesRegex(ValueError, "dataset_size"):
            rlvr.Trainer(svc, svc.create_training_client(config(dataset=1000, batch=1)), lambda p, c: 0.0,
                         rlvr.TrainerConfig(prompts=prompts, prompts_per_step=4))


class CustomLossTest(unittest.TestCase):
    def test_custom_loss_equals_token_ce(self):
        srv = server()
        svc = srv.client()
        batch = byte_batch(TEXTS[:4])
        builtin = svc.create_training_client(config()).forward_backward(batch, "token_ce").result()

        labels = batch["labels"]

        def mean_nll(logprobs):
            losses, grads = [], []
            for lp, lab in zip(logprobs, labels):
                pos = [t for t in range(1, len(lab)) if lab[t] != -100]
                losses.append(-sum(lp[t] for t in pos) / len(pos))
                grads.append([-1.0 / len(pos) if t in pos else 0.0 for t in range(len(lp))])
            return losses, grads

        custom = svc.create_training_client(config()).forward_backward_custom(batch, mean_nll).result()
        for a, b in zip(builtin.per_example_loss, custom.per_example_loss):
            self.assertAlmostEqual(a, b, places=4)
        for a, b in zip(builtin.per_example_grad_norms, custom.per_example_grad_norms):
            self.assertAlmostEqual(a, b, delta=1e-3 * max(1.0, a))

        tc = svc.create_training_client(config())
        with self.assertRaises(ValueError):
            tc.forward_backward_custom(batch, lambda lps: ([0.0] * 4, [[0.0]] * 4))


if __name__ == "__main__":
    unittest.main()
