"""Rollouts, advantages, batches and the RLVR trainer (mirrors rlvr/rollout.go, advantage.go, batch.go, trainer.go).

Every update goes through the server's ``forward_backward`` and
``optim_step``, so per-example clipping, DP noise, the privacy accountant, the
audit log and encrypted checkpoints apply to RL exactly as to supervised
fine-tuning.

Privacy unit: the prompt. A prompt's n completions are n rows but one DP
example (the loss's ``group_size`` is n: one gradient, one norm, one clip), and
each step draws its prompts by Poisson sampling with rate
q = prompts_per_step / len(prompts) from the OS CSPRNG, so the accountant's q
(dp_config expected_batch_size / dataset_size, counted in prompts) is true.
``privacy_unit="completion"`` keeps one completion per example: weaker (a
prompt's guarantee is group privacy over n). ``sampler_seed`` seeds the draw
for tests only.

The generator of sampling seeds is Go's math/rand/v2 PCG (DXSM) with the same
seeding, the seeded Poisson draw is the Go trainer's (``poisson_sample``), and
the state is saved under the same checkpoint metadata key and format as the Go
trainer's (``tensafe-rlvr-state/v1``), so a run saved by one SDK resumes in the
other.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from ..client import ServiceClient, TrainingClient
from ..types import ForwardBackwardResult, OptimStepResult, SamplingParams
from .rewards import RewardSpec, resolve_reward

__all__ = [
    "REINFORCE",
    "PPO",
    "GRPO",
    "STATE_FORMAT",
    "METADATA_KEY",
    "Prompt",
    "Trajectory",
    "RolloutParams",
    "AdvantageConfig",
    "MovingBaseline",
    "TrainerConfig",
    "Trainer",
    "StepResult",
    "Update",
    "State",
    "NoState",
    "rollout",
    "compute_advantages",
    "build_batch",
    "poisson_sample",
    "PCG",
    "UNIT_PROMPT",
    "UNIT_COMPLETION",
]

REINFORCE = "reinforce"
PPO = "ppo"
GRPO = "grpo"

BASELINE_MOVING_AVERAGE = "moving_average"
BASELINE_GROUP_MEAN = "group_mean"
BASELINE_NONE = "none"

# Privacy units: what one DP example (one gradient, one clip) is.
UNIT_PROMPT = "prompt"  # a prompt's n completions are one example (default)
UNIT_COMPLETION = "completion"  # one completion per example: weaker (group privacy over n per prompt)

_POISSON_DOMAIN = b"tensafe-rlvr-poisson/v1"

STATE_FORMAT = "tensafe-rlvr-state/v1"
METADATA_KEY = "rlvr"
MAX_HISTORY = 2000
IGNORE_INDEX = -100

_M64 = (1 << 64) - 1


class PCG:
    """Go's math/rand/v2 PCG-DXSM generator, bit for bit, with Rand's Perm and Uint64N."""

    _MUL = (2549297995355413924 << 64) | 4865540595714422341
    _INC = (6364136223846793005 << 64) | 1442695040888963407

    def __init__(self, seed1: int, seed2: int) -> None:
        self.hi, self.lo = seed1 & _M64, seed2 & _M64

    def uint64(self) -> int:
        s = (((self.hi << 64) | self.lo) * self._MUL + self._INC) & ((1 << 128) - 1)
        self.hi, self.lo = s >> 64, s & _M64
        hi, lo = self.hi, self.lo
        hi ^= hi >> 32
        hi = (hi * 0xDA942042E4DD58B5) & _M64
        hi ^= hi >> 48
        return (hi * (lo | 1)) & _M64

    def uint64n(self, n: int) -> int:
        if n & (n - 1) == 0:
            return self.uint64() & (n - 1)
        prod = self.uint64() * n
        hi, lo = prod >> 64, prod & _M64
        if lo < n:
            thresh = (-n) % n
            while lo < thresh:
                prod = self.uint64() * n
                hi, lo = prod >> 64, prod & _M64
        return hi

    def perm(self, n: int) -> List[int]:
        p = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.uint64n(i + 1)
            p[i], p[j] = p[j], p[i]
        return p

    def marshal(self) -> bytes:
        return b"pcg:" + struct.pack(">QQ", self.hi, self.lo)

    @classmethod
    def unmarshal(cls, data: bytes) -> "PCG":
        if len(data) != 20 or data[:4] != b"pcg:":
            raise ValueError("rlvr: state: rng: invalid PCG encoding")
        hi, lo = struct.unpack(">QQ", data[4:])
        return cls(hi, lo)


def poisson_sample(rate: float, n: int, seed: Optional[bytes] = None, step: int = 0) -> List[int]:
    """One step's Poisson draw of prompts: each of the n is included independently with probability
    ``rate``; the drawn indices in increasing order (possibly none). Go's rlvr.PoissonSample.

    With ``seed`` None the draw comes from the OS CSPRNG (``os.urandom``). A seed makes it a function of
    (seed, step): index i is drawn when the first 8 bytes of
    SHA-256(b"tensafe-rlvr-poisson/v1" + seed + step + i) (big-endian uint64s), as a big-endian integer
    whose top 53 bits u give u / 2**53 < rate — bit for bit the Go trainer's draw. For tests only:
    whoever knows the seed knows which prompts each step used, which the amplification by sampling
    behind the accountant's q assumes nobody does.
    """
    if not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
        raise ValueError("rlvr: poisson sampling: rate must be in [0, 1], got %r" % (rate,))
    if n < 0 or step < 0:
        raise ValueError("rlvr: poisson sampling: negative count %d or step %d" % (n, step))
    if seed is None:
        buf = os.urandom(8 * n)
        words = [int.from_bytes(buf[8 * i: 8 * i + 8], "big") for i in range(n)]
    else:
        prefix = _POISSON_DOMAIN + bytes(seed) + struct.pack(">Q", step)
        words = [int.from_bytes(hashlib.sha256(prefix + struct.pack(">Q", i)).digest()[:8], "big") for i in range(n)]
    return [i for i, w in enumerate(words) if (w >> 11) / float(1 << 53) < rate]


@dataclass
class Prompt:
    """One task: the text the policy continues and its reference answer (for exact_match, numeric_match)."""

    prompt: str
    answer: str = ""


@dataclass
class Trajectory:
    """One sampled completion with what training needs."""

    prompt: int  # index into the prompts given to rollout (the trainer maps it to its prompt list)
    group: int
    prompt_tokens: List[int]
    tokens: List[int]  # completion ids (the stop token included when it ended the sequence)
    logprobs: List[float]  # log q(token) under the sampling distribution, one per token
    text: str = ""
    finish_reason: str = ""
    reward: float = 0.0
    advantage: float = 0.0


@dataclass
class RolloutParams:
    """Sampling of rollouts. ``temperature`` 0 means 1, so the sampling logprobs are the policy's own."""

    n: int = 4
    max_tokens: int = 32
    temperature: float = 0.0
    top_p: float = 0.0
    top_k: int = 0
    stop: Optional[List[str]] = None


def _raw_result(r: Any) -> Any:
    return r


def rollout(
    policy: TrainingClient,
    service: ServiceClient,
    model: str,
    prompts: Sequence[Prompt],
    seeds: Sequence[int],
    params: RolloutParams,
    reward: Callable[..., float],
) -> List[List[Trajectory]]:
    """Sample ``params.n`` completions of each prompt and score them; groups[i] are prompts[i]'s.

    Prompt ids come from the tokenize endpoint with special tokens added —
    exactly how ``sample`` encodes a text prompt — so training sees the tokens
    that were sampled.
    """
    if not prompts:
        raise ValueError("rlvr: rollout: no prompts")
    if len(seeds) != len(prompts):
        raise ValueError("rlvr: rollout: %d seeds for %d prompts" % (len(seeds), len(prompts)))
    if params.n < 1:
        raise ValueError("rlvr: rollout: n must be >= 1, got %d" % params.n)
    reward = resolve_reward(reward)
    tok = service.tokenize([p.prompt for p in prompts], model=model, add_special_tokens=True)
    if len(tok.input_ids) != len(prompts):
        raise ValueError("rlvr: rollout: tokenize answered %d rows for %d prompts" % (len(tok.input_ids), len(prompts)))
    sp = SamplingParams(
        max_tokens=params.max_tokens,
        temperature=params.temperature or 1.0,
        top_p=params.top_p or None,
        top_k=params.top_k or None,
        stop=params.stop,
        n=params.n,
    )
    # Submit every prompt's sample first: the server queues them while the first run.
    handles = []
    for i in range(len(prompts)):
        body = sp.to_dict()
        body["prompt_tokens"] = tok.input_ids[i]
        body["seed"] = seeds[i]
        handles.append(policy._submit("sample", body, _raw_result, None))
    groups: List[List[Trajectory]] = []
    for i, h in enumerate(handles):
        res = h.result()
        seqs = res.get("sequences") if isinstance(res, dict) else None
        if not isinstance(seqs, list) or len(seqs) != params.n:
            raise ValueError("rlvr: rollout: prompt %d: %s sequences, asked for %d" % (i, len(seqs or []), params.n))
        g = []
        for j, s in enumerate(seqs):
            tokens, lps = list(s.get("tokens") or []), list(s.get("logprobs") or [])
            if len(tokens) != len(lps):
                raise ValueError("rlvr: rollout: prompt %d: %d logprobs for %d tokens" % (i, len(lps), len(tokens)))
            text = s.get("text", "")
            try:
                r = float(reward(prompts[i].prompt, text, prompts[i].answer))
            except Exception as e:
                raise ValueError("rlvr: reward of prompt %d, sample %d: %s" % (i, j, e)) from e
            g.append(Trajectory(prompt=i, group=i, prompt_tokens=list(tok.input_ids[i]), tokens=tokens, logprobs=lps,
                                text=text, finish_reason=s.get("finish_reason", ""), reward=r))
        groups.append(g)
    return groups


@dataclass
class AdvantageConfig:
    """How rewards become advantages (baseline moving_average, group_mean or none; GRPO group normalization)."""

    baseline: str = BASELINE_MOVING_AVERAGE
    decay: float = 0.9
    normalize: bool = False
    group_normalize: bool = False
    eps: float = 1e-6

    def check(self) -> None:
        if self.baseline not in (BASELINE_MOVING_AVERAGE, BASELINE_GROUP_MEAN, BASELINE_NONE):
            raise ValueError("rlvr: baseline %r, want moving_average, group_mean or none" % self.baseline)
        if not (0 <= self.decay < 1):
            raise ValueError("rlvr: baseline decay must be in [0, 1), got %r" % self.decay)
        if not (self.eps > 0):
            raise ValueError("rlvr: eps must be > 0, got %r" % self.eps)


@dataclass
class MovingBaseline:
    """Moving-average baseline state; ``set`` is False until the first batch initialises ``value``."""

    value: float = 0.0
    set: bool = False

    def update(self, mean: float, decay: float) -> None:
        if not self.set:
            self.value, self.set = mean, True
        else:
            self.value = decay * self.value + (1 - decay) * mean


def _mean_std(xs: Sequence[float]) -> "tuple[float, float]":
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def compute_advantages(groups: List[List[Trajectory]], cfg: AdvantageConfig, mb: Optional[MovingBaseline]) -> None:
    """Fill each trajectory's advantage from its group's rewards; update the moving baseline after using it."""
    cfg.check()
    rewards = []
    for g in groups:
        for t in g:
            if not math.isfinite(t.reward):
                raise ValueError("rlvr: reward %r is not finite" % t.reward)
            rewards.append(t.reward)
    if not rewards:
        raise ValueError("rlvr: no trajectories")
    batch_mean, _ = _mean_std(rewards)
    if cfg.group_normalize:
        for g in groups:
            m, s = _mean_std([t.reward for t in g])
            for t in g:
                t.advantage = (t.reward - m) / (s + cfg.eps)
        if mb is not None:
            mb.update(batch_mean, cfg.decay)
        return
    for g in groups:
        b = 0.0
        if cfg.baseline == BASELINE_GROUP_MEAN:
            b, _ = _mean_std([t.reward for t in g])
        elif cfg.baseline == BASELINE_MOVING_AVERAGE:
            if mb is None:
                raise ValueError("rlvr: the moving-average baseline needs its state")
            b = mb.value if mb.set else batch_mean
        for t in g:
            t.advantage = t.reward - b
    if cfg.normalize:
        _, s = _mean_std([t.advantage for g in groups for t in g])
        for g in groups:
            for t in g:
                t.advantage /= s + cfg.eps
    if mb is not None:
        mb.update(batch_mean, cfg.decay)


def build_batch(trajs: Sequence[Trajectory]) -> Dict[str, List[List[Any]]]:
    """A batch row per trajectory: prompt + completion ids; labels mask the prompt; advantages and
    sampling_logprobs sit on the completion tokens (value t belongs to input_ids[t])."""
    b: Dict[str, List[List[Any]]] = {"input_ids": [], "labels": [], "advantages": [], "sampling_logprobs": []}
    for i, t in enumerate(trajs):
        if not t.prompt_tokens:
            raise ValueError("rlvr: trajectory %d: empty prompt" % i)
        if not t.tokens:
            raise ValueError("rlvr: trajectory %d: empty completion" % i)
        if len(t.logprobs) != len(t.tokens):
            raise ValueError("rlvr: trajectory %d: %d logprobs for %d tokens" % (i, len(t.logprobs), len(t.tokens)))
        p = len(t.prompt_tokens)
        ids = list(t.prompt_tokens) + list(t.tokens)
        b["input_ids"].append(ids)
        b["labels"].append([IGNORE_INDEX] * p + list(t.tokens))
        b["advantages"].append([0.0] * p + [float(t.advantage)] * len(t.tokens))
        b["sampling_logprobs"].append([0.0] * p + [float(x) for x in t.logprobs])
    return b


@dataclass
class TrainerConfig:
    """Configuration of a Trainer (rlvr.Config in Go)."""

    prompts: List[Prompt] = field(default_factory=list)
    algorithm: str = REINFORCE
    model: str = ""  # the base model's name for tokenizing prompts; "" means the policy's
    # Poisson sampling rate q = prompts_per_step / len(prompts): prompts per step on average (default min(len, 4)).
    prompts_per_step: int = 0
    sampling: RolloutParams = field(default_factory=RolloutParams)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    entropy_coef: float = 0.0
    epochs: int = 0  # default 4 for ppo, 1 otherwise; each epoch is one optim_step
    clip_low: float = 0.8
    clip_high: float = 1.2
    kl_coef: float = 0.0
    reference: Optional[TrainingClient] = None  # never-trained client on the same base model (kl_coef > 0)
    keep_zero_advantage: bool = False
    seed: int = 0  # seeds the sampling of completions (never the prompt draw, nor DP noise)
    privacy_unit: str = UNIT_PROMPT  # or UNIT_COMPLETION (weaker)
    sampler_seed: Optional[bytes] = None  # TESTS ONLY: seeds the Poisson prompt draw; None = os.urandom


@dataclass
class Update:
    """One epoch of a step: its forward_backward (None when no row was sent) and optim_step results."""

    forward_backward: Optional[ForwardBackwardResult]
    optim_step: OptimStepResult


@dataclass
class StepResult:
    """One RLVR step."""

    step: int
    mean_reward: float  # 0 when the Poisson draw was empty (a noise-only step)
    rewards: List[float]
    trajectories: List[Trajectory]
    rows: int
    updates: List[Update]
    examples: int = 0  # DP examples sent: rows / group size
    prompts: Optional[List[int]] = None  # indices drawn this step (increasing); None for update() called directly


class NoState(ValueError):
    """The checkpoint has no rlvr algorithm state in its metadata."""


@dataclass
class State:
    """Algorithm state kept in checkpoint metadata under ``"rlvr"`` (the Go trainer's format)."""

    algorithm: str
    step: int = 0
    baseline: MovingBaseline = field(default_factory=MovingBaseline)
    rng: bytes = b""
    reward_history: List[float] = field(default_factory=list)

    def to_metadata(self) -> Dict[str, Any]:
        return {METADATA_KEY: {
            "format": STATE_FORMAT,
            "algorithm": self.algorithm,
            "step": self.step,
            "baseline": {"value": self.baseline.value, "set": self.baseline.set},
            "rng": base64.b64encode(self.rng).decode("ascii"),
            "reward_history": list(self.reward_history),
        }}

    @classmethod
    def from_metadata(cls, meta: Optional[Mapping[str, Any]]) -> "State":
        if not meta or METADATA_KEY not in meta:
            raise NoState("rlvr: the checkpoint has no rlvr algorithm state")
        s = meta[METADATA_KEY]
        if not isinstance(s, Mapping):
            raise ValueError("rlvr: state: not an object")
        if s.get("format") != STATE_FORMAT:
            raise ValueError("rlvr: state: format %r, want %r" % (s.get("format"), STATE_FORMAT))
        step = s.get("step", 0)
        b = s.get("baseline") or {}
        value = b.get("value", 0.0)
        hist = s.get("reward_history") or []
        if not isinstance(step, int) or step < 0:
            raise ValueError("rlvr: state: negative step")
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("rlvr: state: baseline is not finite")
        if len(hist) > MAX_HISTORY:
            raise ValueError("rlvr: state: %d history entries, at most %d" % (len(hist), MAX_HISTORY))
        try:
            rng = base64.b64decode(s.get("rng") or "", validate=True)
        except ValueError:
            raise ValueError("rlvr: state: rng: not base64") from None
        return cls(algorithm=str(s.get("algorithm", "")), step=step,
                   baseline=MovingBaseline(float(value), bool(b.get("set", False))), rng=rng,
                   reward_history=[float(x) for x in hist])


def _check_sampling_rate(cfg: TrainerConfig, dp: Any) -> None:
    """Refuse a policy whose dp_config declares a sampling rate below the trainer's (the accountant would
    spend too little ε). The DP config counts privacy units: prompts, or completions with the completion unit."""
    if not isinstance(dp, Mapping) or not dp.get("dataset_size"):
        return
    units, per_step, what = len(cfg.prompts), cfg.prompts_per_step, "prompts"
    if cfg.privacy_unit == UNIT_COMPLETION:
        units, per_step, what = units * cfg.sampling.n, per_step * cfg.sampling.n, "completions"
    dataset, batch = int(dp["dataset_size"]), int(dp.get("expected_batch_size") or 0)
    declared, q = batch / dataset, per_step / units
    if declared < q * (1 - 1e-9):
        raise ValueError(
            "rlvr: trainer: the policy's dp_config declares q = expected_batch_size/dataset_size = %d/%d = %.4g, but the "
            "trainer samples %s with q = %d/%d = %.4g: set dataset_size = %d and expected_batch_size = %d (privacy unit: %s)"
            % (batch, dataset, declared, what, per_step, units, q, units, per_step, cfg.privacy_unit))


class Trainer:
    """Runs RLVR steps on a policy training client: REINFORCE (importance_sampling loss), PPO (ppo loss,
    several epochs, optional KL penalty against a reference client) or GRPO (group-normalized advantages)."""

    def __init__(self, service: ServiceClient, policy: TrainingClient,
                 reward: Union[str, RewardSpec, Mapping[str, Any], Callable[..., float]],
                 config: TrainerConfig) -> None:
        cfg = config
        if reward is None:
            raise ValueError("rlvr: trainer: a reward is required")
        reward = resolve_reward(reward)
        if cfg.algorithm not in (REINFORCE, PPO, GRPO):
            raise ValueError("rlvr: trainer: algorithm %r, want reinforce, ppo or grpo" % cfg.algorithm)
        if not cfg.prompts:
            raise ValueError("rlvr: trainer: no prompts")
        cfg.prompts = [p if isinstance(p, Prompt) else Prompt(str(p)) for p in cfg.prompts]
        if cfg.prompts_per_step == 0:
            cfg.prompts_per_step = min(len(cfg.prompts), 4)
        if not (1 <= cfg.prompts_per_step <= len(cfg.prompts)):
            raise ValueError("rlvr: trainer: prompts_per_step must be in [1, %d], got %d" % (len(cfg.prompts), cfg.prompts_per_step))
        if cfg.sampler_seed is not None and len(cfg.sampler_seed) == 0:
            raise ValueError("rlvr: trainer: sampler_seed is set but empty (leave it None to draw from os.urandom)")
        if cfg.sampling.n == 0:
            cfg.sampling.n = 4
        if not cfg.privacy_unit:
            cfg.privacy_unit = UNIT_PROMPT
        if cfg.privacy_unit not in (UNIT_PROMPT, UNIT_COMPLETION):
            raise ValueError("rlvr: trainer: privacy_unit %r, want %r or %r" % (cfg.privacy_unit, UNIT_PROMPT, UNIT_COMPLETION))
        if cfg.sampling.max_tokens == 0:
            cfg.sampling.max_tokens = 32
        if cfg.algorithm == GRPO:
            cfg.advantage.group_normalize = True
            if cfg.sampling.n < 2:
                raise ValueError("rlvr: trainer: grpo needs at least 2 samples per prompt")
        cfg.advantage.check()
        if cfg.algorithm == REINFORCE:
            if cfg.epochs > 1:
                raise ValueError("rlvr: trainer: reinforce makes one update per batch; use ppo for several epochs")
            if cfg.kl_coef != 0:
                raise ValueError("rlvr: trainer: kl_coef applies to ppo and grpo")
            cfg.epochs = 1
        elif cfg.epochs == 0:
            cfg.epochs = 4 if cfg.algorithm == PPO else 1
        if not (1 <= cfg.epochs <= 64):
            raise ValueError("rlvr: trainer: epochs must be in [1, 64], got %d" % cfg.epochs)
        if not (0 < cfg.clip_low <= 1 <= cfg.clip_high):
            raise ValueError("rlvr: trainer: clip thresholds must satisfy 0 < low <= 1 <= high")
        if not (cfg.kl_coef >= 0 and cfg.entropy_coef >= 0):
            raise ValueError("rlvr: trainer: kl_coef and entropy_coef must be >= 0")
        if cfg.kl_coef > 0 and cfg.reference is None:
            raise ValueError("rlvr: trainer: kl_coef > 0 needs a reference client")
        if not cfg.model:
            cfg.model = policy.info.base_model or str(policy.info.config.get("base_model", ""))
        if not cfg.model:
            raise ValueError("rlvr: trainer: the base model is unknown; set TrainerConfig.model")
        _check_sampling_rate(cfg, (policy.info.config or {}).get("dp_config"))
        self.service, self.policy, self.reward, self.config = service, policy, reward, cfg
        self._pcg = PCG(cfg.seed, cfg.seed ^ 0x5851F42D4C957F2D)
        self._state = State(algorithm=cfg.algorithm)

    def state(self) -> State:
        """A copy of the algorithm state, random generator included."""
        s = self._state
        return State(s.algorithm, s.step, MovingBaseline(s.baseline.value, s.baseline.set), self._pcg.marshal(),
                     list(s.reward_history))

    @property
    def sampling_rate(self) -> float:
        """The Poisson rate of prompts, prompts_per_step / len(prompts): the q the accountant must use."""
        return self.config.prompts_per_step / len(self.config.prompts)

    @property
    def group_size(self) -> int:
        """Rows per DP example: samples per prompt with the prompt unit, 1 with the completion unit."""
        return self.config.sampling.n if self.config.privacy_unit == UNIT_PROMPT else 1

    def loss(self) -> Dict[str, Any]:
        """The server loss this trainer's updates use."""
        cfg = self.config
        kw: Dict[str, Any] = {}
        if cfg.algorithm == REINFORCE:
            if cfg.entropy_coef:
                kw["entropy_coef"] = cfg.entropy_coef
            if self.group_size > 1:
                kw["group_size"] = self.group_size
            return {"type": "importance_sampling", "kwargs": kw}
        kw = {"clip_low_threshold": cfg.clip_low, "clip_high_threshold": cfg.clip_high}
        if cfg.kl_coef:
            kw["kl_coef"] = cfg.kl_coef
        if cfg.entropy_coef:
            kw["entropy_coef"] = cfg.entropy_coef
        if self.group_size > 1:
            kw["group_size"] = self.group_size
        return {"type": "ppo", "kwargs": kw}

    def step(self) -> StepResult:
        """Draw prompts by Poisson sampling, roll out, score, compute advantages and update the policy
        (DP-SGD steps of the server); a step that drew no prompt is a noise-only update."""
        cfg = self.config
        idx = poisson_sample(self.sampling_rate, len(cfg.prompts), cfg.sampler_seed, self._state.step)
        groups: List[List[Trajectory]] = []
        if idx:
            prompts = [cfg.prompts[j] for j in idx]
            seeds = [self._pcg.uint64() for _ in idx]
            groups = rollout(self.policy, self.service, cfg.model, prompts, seeds, cfg.sampling, self.reward)
            for g in groups:
                for t in g:
                    t.prompt = idx[t.prompt]
        r = self.update(groups)
        r.prompts = idx
        return r

    def update(self, groups: List[List[Trajectory]]) -> StepResult:
        """The learning half of step: advantages and the policy update from scored rollouts (one group per
        prompt). With the prompt unit every group must be one prompt's ``sampling.n`` trajectories; it is
        sent whole when any advantage is non-zero. No groups is a noise-only step (optim_steps still taken;
        baseline and reward history unchanged)."""
        cfg = self.config
        G = self.group_size
        for i, g in enumerate(groups):
            if G > 1 and len(g) != G:
                raise ValueError("rlvr: update: group %d has %d trajectories; with privacy unit %r a group is one "
                                 "prompt's %d samples" % (i, len(g), cfg.privacy_unit, G))
        empty = all(len(g) == 0 for g in groups)
        baseline = MovingBaseline(self._state.baseline.value, self._state.baseline.set)
        if not empty:
            compute_advantages(groups, cfg.advantage, baseline)
        step = self._state.step + 1
        trajs: List[Trajectory] = []
        rewards: List[float] = []
        rows: List[Trajectory] = []
        for g in groups:
            send = cfg.keep_zero_advantage
            for t in g:
                trajs.append(t)
                rewards.append(t.reward)
                send = send or t.advantage != 0
                if G == 1 and (t.advantage != 0 or cfg.keep_zero_advantage):
                    rows.append(t)
            if G > 1 and send:
                rows.extend(g)
        mean_reward = _mean_std(rewards)[0] if not empty else 0.0
        batch = build_batch(rows) if rows else None
        if batch is not None and cfg.kl_coef > 0:
            assert cfg.reference is not None
            fr = cfg.reference.forward({"input_ids": batch["input_ids"], "labels": batch["labels"]}).result()
            for i, (lp, ids) in enumerate(zip(fr.logprobs, batch["input_ids"])):
                if len(lp) != len(ids):
                    raise ValueError("rlvr: reference forward: row %d: %d logprobs for %d ids" % (i, len(lp), len(ids)))
            batch["reference_logprobs"] = fr.logprobs
        updates = []
        for _ in range(cfg.epochs):
            fb = self.policy.forward_backward(batch, self.loss()).result() if batch is not None else None
            # Under DP a step with no rows is a noise-only release; it is still
            # taken so that every step is one accounted update.
            updates.append(Update(fb, self.policy.optim_step().result()))
        self._state.baseline = baseline
        self._state.step = step
        if not empty:
            self._state.reward_history.append(mean_reward)
            if len(self._state.reward_history) > MAX_HISTORY:
                self._state.reward_history = self._state.reward_history[-MAX_HISTORY:]
        return StepResult(step=step, mean_reward=mean_reward, rewards=rewards, trajectories=trajs, rows=len(rows),
                          updates=updates, examples=len(rows) // G)

    def save(self, name: str = "") -> Any:
        """An encrypted checkpoint of the policy with the algorithm state in its metadata."""
        return self.policy.save_state(name or None, metadata=self.state().to_metadata())

    def load(self, artifact_id: str) -> None:
        """Restore a checkpoint written by ``save`` (the policy first, then the algorithm state)."""
        r = self.policy.load_state(artifact_id)
        self.restore(r.metadata)

    def restore(self, metadata: Optional[Mapping[str, Any]]) -> None:
        """Set the algorithm state from checkpoint metadata (as load_state returns it)."""
        s = State.from_metadata(metadata)
        if s.algorithm != self.config.algorithm:
            raise ValueError("rlvr: the checkpoint's state is of algorithm %r, this trainer runs %r" % (s.algorithm, self.config.algorithm))
        self._pcg = PCG.unmarshal(s.rng)
        s.rng = b""
        self._state = s
