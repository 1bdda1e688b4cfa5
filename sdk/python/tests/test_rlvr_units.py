"""tensafe.rlvr without a server: rewards, advantages, batches, the Go-compatible generator and state."""

from __future__ import annotations

import base64
import math
import unittest

import _server  # noqa: F401  (puts the SDK on sys.path)

from tensafe import rlvr
from tensafe.rlvr import rewards as rw


class PCGTest(unittest.TestCase):
    def test_matches_go_math_rand_v2(self):
        # Produced by Go 1.26: pcg := rand.NewPCG(42, 42^0x5851f42d4c957f2d); r := rand.New(pcg);
        # r.Perm(10)[:4], r.Uint64(), r.Uint64(); r.Perm(7)[:3], r.Uint64(); pcg.MarshalBinary(), r.Uint64().
        p = rlvr.PCG(42, 42 ^ 0x5851F42D4C957F2D)
        self.assertEqual(p.perm(10)[:4], [8, 0, 7, 3])
        self.assertEqual(p.uint64(), 11091163245851749751)
        self.assertEqual(p.uint64(), 5542303094373219023)
        self.assertEqual(p.perm(7)[:3], [2, 6, 3])
        self.assertEqual(p.uint64(), 16381935125466570144)
        self.assertEqual(base64.b64encode(p.marshal()).decode(), "cGNnOnPg3em+yHVKhUhAFIw9NZk=")
        q = rlvr.PCG.unmarshal(p.marshal())
        self.assertEqual(p.uint64(), 11381699533355779063)
        self.assertEqual(q.uint64(), 11381699533355779063)
        with self.assertRaises(ValueError):
            rlvr.PCG.unmarshal(b"pcg:short")


class PoissonSampleTest(unittest.TestCase):
    def test_matches_go(self):
        # Produced by Go 1.26: rlvr.PoissonSample(0.3, 40, []byte("go vector"), 5), (0.5, 20, "tests", 0) and step 1.
        self.assertEqual(rlvr.poisson_sample(0.3, 40, b"go vector", 5), [4, 5, 6, 14, 17, 21, 33, 38])
        self.assertEqual(rlvr.poisson_sample(0.5, 20, b"tests", 0), [0, 1, 2, 4, 6, 7, 8, 10, 11, 12, 13])
        self.assertEqual(rlvr.poisson_sample(0.5, 20, b"tests", 1), [1, 4, 5, 8, 10, 16, 17, 18])

    def test_rates(self):
        for seed in (None, b"s"):
            self.assertEqual(rlvr.poisson_sample(0.0, 30, seed, 0), [])
            self.assertEqual(rlvr.poisson_sample(1.0, 30, seed, 0), list(range(30)))
            n, q, steps = 40, 0.25, 200
            total = sum(len(rlvr.poisson_sample(q, n, seed, s)) for s in range(steps))
            mean, sd = n * steps * q, math.sqrt(n * steps * q * (1 - q))
            self.assertLess(abs(total - mean), 5 * sd, "seed %r: %d drawn, expected %.0f" % (seed, total, mean))
        # Two CSPRNG draws of 256 at q = 1/2 agree with probability 2^-256.
        self.assertNotEqual(rlvr.poisson_sample(0.5, 256), rlvr.poisson_sample(0.5, 256))
        for bad in (dict(rate=-0.1, n=1), dict(rate=1.5, n=1), dict(rate=float("nan"), n=1), dict(rate=0.5, n=-1)):
            with self.assertRaises(ValueError):
                rlvr.poisson_sample(**bad)


class RewardsTest(unittest.TestCase):
    def test_keyword_contains(self):
        cases = [
            ({"keywords": ["Yes", "sure"]}, "yes, maybe", 0.5),
            ({"keywords": ["Yes", "sure"], "mode": "all"}, "yes, maybe", 0.0),
            ({"keywords": ["Yes", "sure"], "mode": "any"}, "yes, maybe", 1.0),
            ({"keywords": ["Yes"], "case_sensitive": True}, "yes", 0.0),
        ]
        for kw, text, want in cases:
            with self.subTest(kw=kw):
                self.assertEqual(rlvr.resolve_reward("keyword_contains", **kw)("p", text, ""), want)

    def test_length_penalty(self):
        f = rlvr.resolve_reward("length_penalty", target=4, min=2, scale=2.0)
        self.assertEqual(f("", "abcd", ""), 0.0)
        self.assertAlmostEqual(f("", "abcdef", ""), -2.0 * 2 / 4)
        self.assertAlmostEqual(f("", "a", ""), -2.0 * 1 / 2)
        self.assertAlmostEqual(rlvr.resolve_reward("length_penalty", target=2, unit="bytes")("", "éé", ""), -1.0)

    def test_format_compliance(self):
        f = rlvr.resolve_reward("format_compliance", regex=r"\d+")
        self.assertEqual(f("", " 42 ", ""), 1.0)
        self.assertEqual(f("", "x42", ""), 0.0)
        self.assertEqual(rlvr.resolve_reward("format_compliance", regex=r"\d+", search=True)("", "x42", ""), 1.0)
        schema = {"type": "object", "required": ["name"], "additionalProperties": False,
                  "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0}}}
        g = rlvr.resolve_reward("format_compliance", json_schema=schema)
        self.assertEqual(g("", '{"name": "ada", "age": 36}', ""), 1.0)
        for bad in ['{"age": 3}', '{"name": ""}', '{"name": "a", "age": 1.5}', '{"name": "a", "x": 1}',
                    '{"name": "a"} trailing', "NaN", "not json"]:
            with self.subTest(bad=bad):
                self.assertEqual(g("", bad, ""), 0.0)
        with self.assertRaises(ValueError) as cm:
            rlvr.resolve_reward("format_compliance", json_schema={"pattern": "x"})
        self.assertIn("not supported", str(cm.exception))
        with self.assertRaises(ValueError):
            rlvr.resolve_reward("format_compliance", regex="(")

    def test_exact_and_numeric_match(self):
        self.assertEqual(rlvr.resolve_reward("exact_match")("", " Paris ", "Paris"), 1.0)
        self.assertEqual(rlvr.resolve_reward("exact_match", normalize="lower")("", "new  YORK", "New York"), 1.0)
        f = rlvr.resolve_reward("numeric_match", tolerance=0.01)
        self.assertEqual(f("", "so it is 1,234.5", "1234.5"), 1.0)
        self.assertEqual(f("", "3/4", "0.75"), 1.0)
        self.assertEqual(f("", "no number", "1"), 0.0)
        with self.assertRaises(ValueError):
            f("", "1", "no answer")
        self.assertEqual(rlvr.last_number("a 1 then -2.5e1"), -25.0)
        self.assertIsNone(rlvr.last_number("none"))

    def test_registry_errors_and_custom(self):
        reg = rw.RewardRegistry()
        with self.assertRaises(ValueError) as cm:
            reg.resolve("keyword_contains", keywords=["a"], colour="red")
        self.assertIn("colour", str(cm.exception))
        with self.assertRaises(rlvr.UnknownReward):
            reg.resolve("nope")
        reg.register_func("two_args", lambda prompt, completion: float(len(completion)))
        self.assertEqual(reg.resolve("two_args")("p", "abc", "ans"), 3.0)
        with self.assertRaises(ValueError):
            reg.register_func("two_args", lambda p, c: 0.0)
        with self.assertRaises(ValueError):
            reg.register("keyword_contains", lambda **kw: None)
        with self.assertRaises(ValueError):
            reg.register("Bad Name", lambda **kw: None)

        @reg.register("scaled")
        def scaled(factor=1.0):
            return lambda p, c, a="": factor * len(c)

        total = reg.resolve_all([{"type": "scaled", "kwargs": {"factor": 2}}, {"type": "two_args", "weight": -1}])
        self.assertEqual(total("", "abcd", ""), 8.0 - 4.0)
        self.assertEqual(reg.resolve(lambda p, c, a: 7.0)("", "", ""), 7.0)


def traj(reward, group=0, prompt=(1, 2), tokens=(3, 4), lps=(-0.5, -1.5)):
    return rlvr.Trajectory(prompt=group, group=group, prompt_tokens=list(prompt), tokens=list(tokens), logprobs=list(lps), reward=reward)


class AdvantagesTest(unittest.TestCase):
    def test_group_mean(self):
        g = [[traj(1.0), traj(0.0)], [traj(2.0, 1), traj(2.0, 1)]]
        rlvr.compute_advantages(g, rlvr.AdvantageConfig(baseline="group_mean"), None)
        self.assertEqual([t.advantage for t in g[0] + g[1]], [0.5, -0.5, 0.0, 0.0])

    def test_moving_average(self):
        mb = rlvr.MovingBaseline()
        g = [[traj(1.0), traj(3.0)]]
        rlvr.compute_advantages(g, rlvr.AdvantageConfig(), mb)
        self.assertEqual([t.advantage for t in g[0]], [-1.0, 1.0])  # first batch: its own mean
        self.assertEqual((mb.value, mb.set), (2.0, True))
        g = [[traj(4.0), traj(4.0)]]
        rlvr.compute_advantages(g, rlvr.AdvantageConfig(decay=0.5), mb)
        self.assertEqual([t.advantage for t in g[0]], [2.0, 2.0])
        self.assertEqual(mb.value, 3.0)

    def test_normalize_and_grpo(self):
        g = [[traj(0.0), traj(2.0)]]
        rlvr.compute_advantages(g, rlvr.AdvantageConfig(baseline="group_mean", normalize=True, eps=1e-12), None)
        self.assertAlmostEqual(g[0][0].advantage, -1.0)
        g = [[traj(0.0), traj(4.0)], [traj(1.0, 1), traj(1.0, 1)]]
        rlvr.compute_advantages(g, rlvr.AdvantageConfig(group_normalize=True, eps=1e-12), rlvr.MovingBaseline())
        self.assertAlmostEqual(g[0][1].advantage, 1.0)
        self.assertEqual(g[1][0].advantage, 0.0)
        with self.assertRaises(ValueError):
            rlvr.compute_advantages([[traj(math.nan)]], rlvr.AdvantageConfig(baseline="none"), None)
        with self.assertRaises(ValueError):
            rlvr.compute_advantages([[traj(1.0)]], rlvr.AdvantageConfig(baseline="median"), None)


class TrainerConfigTest(unittest.TestCase):
    """Trainer checks its configuration before any request (no server needed: nothing is sent)."""

    def setUp(self):
        import tensafe

        self.svc = tensafe.ServiceClient("http://127.0.0.1:9", "ts_unused_key")
        self.tc = tensafe.TrainingClient(self.svc, tensafe.TrainingClientInfo(id="tc_x", base_model="tensafe-tiny"))

    def test_defaults(self):
        tr = rlvr.Trainer(self.svc, self.tc, lambda p, c: 0.0,
                          rlvr.TrainerConfig(prompts=[rlvr.Prompt("a"), rlvr.Prompt("b")], algorithm=rlvr.PPO))
        c = tr.config
        self.assertEqual((c.prompts_per_step, c.sampling.n, c.sampling.max_tokens, c.epochs, c.model), (2, 4, 32, 4, "tensafe-tiny"))
        # The prompt is the privacy unit: its 4 completions are one example.
        self.assertEqual((c.privacy_unit, tr.group_size, tr.sampling_rate), (rlvr.UNIT_PROMPT, 4, 1.0))
        self.assertEqual(tr.loss(), {"type": "ppo", "kwargs": {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2, "group_size": 4}})
        r = rlvr.Trainer(self.svc, self.tc, lambda p, c: 0.0, rlvr.TrainerConfig(prompts=["x"], entropy_coef=0.01))
        self.assertEqual(r.loss(), {"type": "importance_sampling", "kwargs": {"entropy_coef": 0.01, "group_size": 4}})
        u = rlvr.Trainer(self.svc, self.tc, lambda p, c: 0.0,
                         rlvr.TrainerConfig(prompts=["x", "y"], prompts_per_step=1, privacy_unit=rlvr.UNIT_COMPLETION))
        self.assertEqual((u.loss(), u.group_size, u.sampling_rate), ({"type": "importance_sampling", "kwargs": {}}, 1, 0.5))
        g = rlvr.Trainer(self.svc, self.tc, lambda p, c: 0.0, rlvr.TrainerConfig(prompts=["x"], algorithm=rlvr.GRPO))
        self.assertTrue(g.config.advantage.group_normalize)
        self.assertEqual(g.config.epochs, 1)

    def test_refusals(self):
        bad = [
            dict(prompts=[]),
            dict(prompts=["x"], algorithm="a2c"),
            dict(prompts=["x"], epochs=2),
            dict(prompts=["x"], kl_coef=0.1),
            dict(prompts=["x"], algorithm=rlvr.PPO, kl_coef=0.1),
            dict(prompts=["x"], algorithm=rlvr.GRPO, sampling=rlvr.RolloutParams(n=1)),
            dict(prompts=["x"], prompts_per_step=2),
            dict(prompts=["x"], clip_low=1.5),
            dict(prompts=["x"], algorithm=rlvr.PPO, epochs=65),
            dict(prompts=["x"], privacy_unit="row"),
            dict(prompts=["x"], sampler_seed=b""),
        ]
        for kw in bad:
            with self.subTest(kw=kw):
                with self.assertRaises(ValueError):
                    rlvr.Trainer(self.svc, self.tc, lambda p, c: 0.0, rlvr.TrainerConfig(**kw))
        with self.assertRaises(rlvr.UnknownReward):
            rlvr.Trainer(self.svc, self.tc, "no_such_reward", rlvr.TrainerConfig(prompts=["x"]))

    def test_sampling_rate_check(self):
        # A dp_config declaring a smaller q than the trainer's Poisson rate is refused, naming the fields.
        import tensafe

        prompts = [rlvr.Prompt(c) for c in "abcdefghij"]
        cases = [
            (rlvr.UNIT_PROMPT, 10, 2, True),
            (rlvr.UNIT_PROMPT, 5, 1, True),
            (rlvr.UNIT_PROMPT, 10, 4, True),  # overstated q: allowed
            (rlvr.UNIT_PROMPT, 100, 2, False),
            (rlvr.UNIT_COMPLETION, 40, 8, True),
            (rlvr.UNIT_COMPLETION, 400, 8, False),
        ]
        for unit, dataset, batch, ok in cases:
            with self.subTest(unit=unit, dataset=dataset, batch=batch):
                tc = tensafe.TrainingClient(self.svc, tensafe.TrainingClientInfo(
                    id="tc_x", base_model="tensafe-tiny",
                    config={"dp_config": {"dataset_size": dataset, "expected_batch_size": batch}}))
                cfg = rlvr.TrainerConfig(prompts=list(prompts), prompts_per_step=2, privacy_unit=unit)
                if ok:
                    rlvr.Trainer(self.svc, tc, lambda p, c: 0.0, cfg)
                else:
                    with self.assertRaisesRegex(ValueError, "dataset_size.*expected_batch_size"):
                        rlvr.Trainer(self.svc, tc, lambda p, c: 0.0, cfg)

    def test_update_refuses_partial_groups(self):
        tr = rlvr.Trainer(self.svc, self.tc, lambda p, c: 0.0,
                          rlvr.TrainerConfig(prompts=["x"], sampling=rlvr.RolloutParams(n=2)))
        with self.assertRaisesRegex(ValueError, "group 0 has 1 trajectories"):
            tr.update([[traj(1.0)]])


class BatchAndStateTest(unittest.TestCase):
    def test_build_batch_alignment(self):
        t = traj(1.0, prompt=(256, 10, 11), tokens=(20, 257), lps=(-0.25, -2.0))
        t.advantage = 0.5
        b = rlvr.build_batch([t])
        self.assertEqual(b["input_ids"], [[256, 10, 11, 20, 257]])
        self.assertEqual(b["labels"], [[-100, -100, -100, 20, 257]])
        self.assertEqual(b["advantages"], [[0.0, 0.0, 0.0, 0.5, 0.5]])
        self.assertEqual(b["sampling_logprobs"], [[0.0, 0.0, 0.0, -0.25, -2.0]])
        with self.assertRaises(ValueError):
            rlvr.build_batch([traj(1.0, tokens=(1, 2), lps=(-1.0,))])

    def test_state_round_trip_and_go_format(self):
        pcg = rlvr.PCG(7, 7 ^ 0x5851F42D4C957F2D)
        s = rlvr.State("reinforce", 3, rlvr.MovingBaseline(0.25, True), pcg.marshal(), [0.1, 0.2, 0.3])
        meta = s.to_metadata()
        self.assertEqual(meta["rlvr"]["format"], "tensafe-rlvr-state/v1")
        back = rlvr.State.from_metadata(meta)
        self.assertEqual(back, s)
        # What the Go trainer writes (json.Marshal of rlvr.State; []byte as base64).
        go = {"rlvr": {"format": "tensafe-rlvr-state/v1", "algorithm": "ppo", "step": 2,
                       "baseline": {"value": 0.5, "set": True}, "rng": "cGNnOnPg3em+yHVKhUhAFIw9NZk=",
                       "reward_history": [0.1, 0.4]}}
        st = rlvr.State.from_metadata(go)
        self.assertEqual((st.algorithm, st.step, st.baseline.value), ("ppo", 2, 0.5))
        self.assertEqual(rlvr.PCG.unmarshal(st.rng).uint64(), 11381699533355779063)
        with self.assertRaises(rlvr.NoState):
            rlvr.State.from_metadata({"other": 1})
        bad = {"rlvr": dict(go["rlvr"], format="v0")}
        with self.assertRaises(ValueError):
            rlvr.State.from_metadata(bad)


if __name__ == "__main__":
    unittest.main()
