"""TenSafe quickstart: the original SDK's training example, against `tensafe serve`.

    go build -o /tmp/tensafe ./cmd/tensafe
    /tmp/tensafe serve --data-dir /tmp/tensafe-data --addr 127.0.0.1:8080 &
    PYTHONPATH=sdk/python/src python3 sdk/python/examples/quickstart.py --data-dir /tmp/tensafe-data

With --data-dir the example reads the operator admin key that `tensafe serve`
wrote to <data-dir>/admin.key, creates a tenant and a trainer key, and trains
as that tenant. With --api-key (or TENSAFE_API_KEY) it uses that key as is.

It DP-fine-tunes a LoRA adapter of the built-in model tensafe-tiny on a small
synthetic dataset: Poisson-sampled batches (rate q = batch_size /
dataset_size, what the accountant assumes), per-example clipping and Gaussian
noise on the server, an RDP accountant that refuses any step over the budget.
It prints the loss and ε per step, samples, and saves an encrypted checkpoint.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

from tensafe import DPConfig, LoRAConfig, OptimizerConfig, PrivacyBudgetExceeded, ServiceClient, TrainingConfig

SUBJECTS = ["the patient", "the nurse", "the doctor", "the visitor"]
VERBS = ["reports", "notes", "denies", "describes"]
OBJECTS = ["mild pain", "no fever", "a headache", "good sleep", "a cough", "low appetite", "some nausea", "no allergies"]


def synthetic_notes():
    """64 synthetic clinical-style notes (no real data)."""
    return ["%s %s %s." % (s, v, o) for s in SUBJECTS for v in VERBS for o in OBJECTS][:64]


def connect(args):
    """A ServiceClient as a trainer: --api-key / TENSAFE_API_KEY, or a fresh tenant made with <data-dir>/admin.key."""
    key = args.api_key or os.environ.get("TENSAFE_API_KEY", "")
    if key:
        return ServiceClient(args.base_url, key), None
    if not args.data_dir:
        sys.exit("quickstart: give --data-dir of a running `tensafe serve`, or --api-key / TENSAFE_API_KEY")
    with open(os.path.join(args.data_dir, "admin.key")) as f:
        admin = ServiceClient(args.base_url, f.read().strip())
    tenant = admin.create_tenant("py-quickstart-" + time.strftime("%Y%m%d-%H%M%S"))
    trainer_key = admin.create_api_key(tenant.id, "trainer")
    return ServiceClient(args.base_url, trainer_key.token), tenant


def dataloader(examples, q, steps, pad_id, rng):
    """Poisson sampling: each example joins a batch independently with probability q."""
    for _ in range(steps):
        rows = [ex for ex in examples if rng.random() < q]
        width = max((len(r) for r in rows), default=0)
        yield {
            "input_ids": [r + [pad_id] * (width - len(r)) for r in rows],
            "attention_mask": [[1] * len(r) + [0] * (width - len(r)) for r in rows],
            "labels": [r + [-100] * (width - len(r)) for r in rows],
        }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default=os.environ.get("TENSAFE_BASE_URL", "http://127.0.0.1:8080"))
    p.add_argument("--api-key", default="", help="a trainer API key (default $TENSAFE_API_KEY)")
    p.add_argument("--data-dir", default="", help="data dir of `tensafe serve`: use its admin.key to make a tenant")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)

    # Initialize client
    service, tenant = connect(args)
    notes = synthetic_notes()
    tok = service.tokenize(notes, model="tensafe-tiny", add_special_tokens=True)
    examples = [ids + [tok.eos_token_id] for ids in tok.input_ids]

    # Configure training with privacy
    config = TrainingConfig(
        model_ref="tensafe-tiny",
        lora_config=LoRAConfig(rank=16, alpha=32),
        dp_config=DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, target_epsilon=8.0, dataset_size=len(examples)),
        optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0),
        batch_size=args.batch_size,
        seed=1,
    )

    # Create training client
    tc = service.create_training_client(config)
    print("TenSafe quickstart (Python SDK): %s, training client %s%s" % (service.base_url, tc.id, " of tenant " + tenant.id if tenant else ""))
    q = args.batch_size / len(examples)
    print("dataset: %d synthetic notes; Poisson sampling q = %.3f; DP σ = 1.0, C = 1.0, budget ε = 8, δ = 1e-5\n" % (len(examples), q))

    # Training loop
    rng = random.SystemRandom()
    first = last = None
    for step, batch in enumerate(dataloader(examples, q, args.steps, tok.eos_token_id, rng), 1):
        loss = None
        if batch["input_ids"]:
            # Async forward/backward pass
            future = tc.forward_backward({
                "input_ids": batch["input_ids"],
                "attention_mask": batch["attention_mask"],
                "labels": batch["labels"],
            })
            # Get results (applies gradient clipping)
            result = future.result()
            loss = result.loss
            first = loss if first is None else first
            last = loss
        # Optimizer step (applies DP noise, tracks privacy budget). An empty
        # Poisson batch is still a (noise-only) step: skipping it would leak.
        try:
            step_result = tc.optim_step().result()
        except PrivacyBudgetExceeded as e:
            print("step %d refused by the privacy budget: %s" % (step, e.message))
            break
        shown = "loss %7.4f" % loss if loss is not None else "noise-only step"
        print("step %3d  batch %2d  %s  ε %.3f" % (step, len(batch["input_ids"]), shown, step_result.epsilon_spent))

    # Check privacy budget spent
    metrics = tc.get_dp_metrics()
    print(f"\nPrivacy spent: ε={metrics.epsilon_spent:.2f}, δ={metrics.delta} over {metrics.steps} steps "
          f"({metrics.epsilon_remaining:.2f} remaining)")

    out = tc.sample(["the patient "], max_tokens=24, temperature=0)
    print("sample (greedy): %r" % ("the patient " + out.samples[0].completion))

    # Save encrypted checkpoint
    saved = tc.save_state("final-checkpoint", metadata={"example": "quickstart", "steps": metrics.steps})
    print("encrypted checkpoint: artifact %s, %d bytes, %s" % (saved.artifact_id, saved.size, saved.content_hash))
    if first is not None:
        print("loss: first batch %.4f, last batch %.4f" % (first, last))
    return {"first_loss": first, "last_loss": last, "metrics": metrics, "artifact_id": saved.artifact_id}


if __name__ == "__main__":
    main()
