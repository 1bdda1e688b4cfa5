"""RLVR basics: REINFORCE with verifiable rewards on tensafe-tiny, every update a DP-SGD step.

    go build -o /tmp/tensafe ./cmd/tensafe
    /tmp/tensafe serve --data-dir /tmp/tensafe-data --addr 127.0.0.1:8080 &
    PYTHONPATH=sdk/python/src python3 sdk/python/examples/rlvr_basic.py --data-dir /tmp/tensafe-data

The untrained tensafe-tiny answers a prompt ending in a space with more
spaces. The reward — a custom callable registered by name, plus a built-in
weighted in — pays for written characters, so REINFORCE (the server's
importance_sampling loss, group-mean baseline) visibly raises the mean reward
within a few steps. Rewards run here, in the caller's process; the server sees
only token ids and advantages, and clips and noises every update like any
other. The algorithm state is saved in the encrypted checkpoint's metadata.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tensafe import DPConfig, LoRAConfig, OptimizerConfig, ServiceClient, TrainingConfig
from tensafe import rlvr

PROMPTS = ["Q: name a color. A: ", "Q: name a fruit. A: ", "Q: name an animal. A: ", "Q: name a city. A: "]


def nonblank_fraction(prompt: str, completion: str) -> float:
    """The fraction of the completion's characters that are not white space."""
    return sum(not ch.isspace() for ch in completion) / max(len(completion), 1)


if "nonblank_fraction" not in rlvr.reward_names():
    rlvr.register_reward_func("nonblank_fraction", nonblank_fraction)


def connect(args):
    key = args.api_key or os.environ.get("TENSAFE_API_KEY", "")
    if key:
        return ServiceClient(args.base_url, key)
    if not args.data_dir:
        sys.exit("rlvr_basic: give --data-dir of a running `tensafe serve`, or --api-key / TENSAFE_API_KEY")
    with open(os.path.join(args.data_dir, "admin.key")) as f:
        admin = ServiceClient(args.base_url, f.read().strip())
    tenant = admin.create_tenant("py-rlvr-" + time.strftime("%Y%m%d-%H%M%S"))
    return ServiceClient(args.base_url, admin.create_api_key(tenant.id, "trainer").token)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default=os.environ.get("TENSAFE_BASE_URL", "http://127.0.0.1:8080"))
    p.add_argument("--api-key", default="", help="a trainer API key (default $TENSAFE_API_KEY)")
    p.add_argument("--data-dir", default="", help="data dir of `tensafe serve`: use its admin.key to make a tenant")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--samples", type=int, default=8, help="completions per prompt (the group size)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)

    service = connect(args)
    # The privacy unit is a prompt (its completions are one DP example), and
    # every prompt is drawn every step: q = 1.
    units = len(PROMPTS)
    policy = service.create_training_client(TrainingConfig(
        base_model="tensafe-tiny",
        lora_config=LoRAConfig(rank=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        # q = 1 (every prompt every step); σ = 0.3 keeps RL's small batches learnable at a large ε.
        dp_config=DPConfig(noise_multiplier=0.3, max_grad_norm=1.0, target_epsilon=500.0, dataset_size=units, expected_batch_size=units),
        optimizer=OptimizerConfig(learning_rate=2e-2, weight_decay=0.0),
        seed=args.seed,
    ))
    reward = rlvr.resolve_rewards([
        {"type": "nonblank_fraction"},
        {"type": "keyword_contains", "kwargs": {"keywords": ["e", "a", "o"], "mode": "any"}, "weight": 0.1},
    ])
    trainer = rlvr.Trainer(service, policy, reward, rlvr.TrainerConfig(
        algorithm=rlvr.REINFORCE,
        prompts=[rlvr.Prompt(t) for t in PROMPTS],
        prompts_per_step=len(PROMPTS),
        sampling=rlvr.RolloutParams(n=args.samples, max_tokens=12),
        advantage=rlvr.AdvantageConfig(baseline="group_mean"),
        seed=args.seed,
    ))
    print("RLVR (REINFORCE, importance_sampling loss) on %s, client %s: %d prompts x %d samples per step"
          % (service.base_url, policy.id, len(PROMPTS), args.samples))
    history = []
    for _ in range(args.steps):
        r = trainer.step()
        history.append(r.mean_reward)
        eps = r.updates[-1].optim_step.epsilon_spent
        print("step %2d  mean reward %.3f  rows %2d  ε %.2f  e.g. %r" % (r.step, r.mean_reward, r.rows, eps, r.trajectories[0].text))
    saved = trainer.save("rlvr-basic")
    print("mean reward: first step %.3f, last step %.3f; checkpoint %s (algorithm state in its metadata)"
          % (history[0], history[-1], saved.artifact_id))
    return {"history": history, "artifact_id": saved.artifact_id, "trainer": trainer}


if __name__ == "__main__":
    main()
