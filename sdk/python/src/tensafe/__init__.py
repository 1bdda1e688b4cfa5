"""TenSafe: privacy-first fine-tuning, from Python.

The Python SDK of the TenSafe training API (docs/API.md). It speaks to a
``tensafe serve`` server over HTTP with the standard library only::

    from tensafe import ServiceClient, TrainingConfig, LoRAConfig, DPConfig

    service = ServiceClient("http://127.0.0.1:8080", api_key)
    tc = service.create_training_client(TrainingConfig(
        base_model="tensafe-tiny",
        lora_config=LoRAConfig(rank=8, alpha=16),
        dp_config=DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, target_epsilon=8.0,
                           dataset_size=1000, expected_batch_size=16),
    ))
    result = tc.forward_backward({"input_ids": ids, "labels": ids}).result()
    tc.optim_step()
    print(tc.get_dp_metrics().epsilon_spent)

Every update is DP-SGD (per-example clipping, Gaussian noise, an accountant
that refuses a step over the budget) and every checkpoint is encrypted: those
rules live in the server, whatever the client. ``tensafe.rlvr`` runs RL with
verifiable rewards on the server's importance_sampling and ppo losses.
"""

from . import errors, types
from ._transport import RetryPolicy
from .client import ServiceClient, TrainingClient
from .errors import *  # noqa: F401,F403 (the names of errors.__all__)
from .futures import FutureHandle
from .types import *  # noqa: F401,F403 (the names of types.__all__)

__version__ = "0.1.0"

__all__ = ["ServiceClient", "TrainingClient", "FutureHandle", "RetryPolicy"]
__all__ += types.__all__
__all__ += errors.__all__
