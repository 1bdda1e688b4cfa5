"""RL with verifiable rewards (RLVR) over TenSafe's training API, mirroring the Go package rlvr.

The pieces, each usable alone:

* rewards — a registry of verifiable reward functions (``keyword_contains``,
  ``length_penalty``, ``format_compliance``, ``exact_match``,
  ``numeric_match``) resolved by name with validated kwargs, plus your own
  callables (``register_reward``, ``resolve_reward``);
* ``poisson_sample`` — each step's prompts by Poisson sampling (rate
  prompts_per_step / len(prompts)), from the OS CSPRNG;
* ``rollout`` — n samples per prompt through the real ``sample`` endpoint, the
  sampling log-probabilities kept;
* ``compute_advantages`` — moving-average or group-mean baselines,
  normalization, GRPO group normalization;
* ``build_batch`` — rows whose labels mask the prompt and whose
  ``advantages``/``sampling_logprobs`` sit on the completion tokens;
* ``Trainer`` — REINFORCE (the ``importance_sampling`` loss), PPO (the clipped
  ``ppo`` loss over several epochs, a KL penalty against a never-trained
  reference client) and GRPO, with its state saved in the encrypted
  checkpoint's metadata (the Go trainer's format: runs resume across SDKs).

Every update is a DP-SGD step of the server: clipping, noise, the accountant
and the audit log apply to RL exactly as to supervised fine-tuning. The
privacy unit is the prompt: a prompt's n completions are one DP example (the
loss's ``group_size``), and the policy's dp_config counts prompts
(``dataset_size`` = len(prompts), ``expected_batch_size`` = prompts_per_step).

    reward = resolve_reward("keyword_contains", keywords=["yes"])
    trainer = Trainer(service, tc, reward, TrainerConfig(prompts=[Prompt("Q: ...")]))
    for _ in range(10):
        print(trainer.step().mean_reward)
"""

from . import core, rewards
from .core import *  # noqa: F401,F403 (the names of core.__all__)
from .rewards import *  # noqa: F401,F403 (the names of rewards.__all__)

__all__ = core.__all__ + rewards.__all__
