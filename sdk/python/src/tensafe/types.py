"""Configuration and result types: plain dataclasses mirroring the wire types of docs/API.md.

Configurations serialise with ``to_dict()`` (absent optional settings are
left out, so the server applies its documented defaults and validates every
value, answering ``ValidationError`` with the field's JSON path). Results are
built with ``from_dict()``, which ignores fields a newer server adds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Type, TypeVar, Union, cast

from .errors import MalformedResponse

__all__ = [
    "TINY_MODEL",
    "LoRAConfig",
    "DPConfig",
    "OptimizerConfig",
    "LossSpec",
    "TrainingConfig",
    "SamplingParams",
    "ForwardBackwardResult",
    "ForwardResult",
    "OptimStepResult",
    "Sequence",
    "SampleResult",
    "SaveStateResult",
    "LoadStateResult",
    "DPMetrics",
    "Artifact",
    "PackageResult",
    "Signer",
    "DownloadedArtifact",
    "TrainingClientInfo",
    "AuditEntry",
    "AuditPage",
    "Tenant",
    "APIKey",
    "TokenizeResult",
    "Dataset",
    "TrainStepResult",
]

TINY_MODEL = "tensafe-tiny"
"""The built-in model every server has (a byte-level Llama-style decoder)."""

T = TypeVar("T")


def _compact(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class LoRAConfig:
    """Low-rank adapters as PEFT configures them. ``target_modules`` None: the attention projections."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: Optional[List[str]] = None
    use_rslora: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return _compact(
            {
                "rank": self.rank,
                "alpha": self.alpha,
                "dropout": self.dropout or None,
                "target_modules": list(self.target_modules) if self.target_modules else None,
                "use_rslora": self.use_rslora or None,
            }
        )


@dataclass
class DPConfig:
    """DP-SGD and the privacy budget. Every TenSafe training client is private.

    The sampling rate is q = expected_batch_size / dataset_size, declared by the
    client; both are required by the server (``TrainingConfig.batch_size`` fills
    ``expected_batch_size`` when it is None). With ``sampling="server"`` and
    ``dataset_id`` (a dataset from ``ServiceClient.create_dataset``) the server
    draws every batch itself (``TrainingClient.train_step``): leave
    ``dataset_size`` None, it is the dataset's rows, and q is enforced.
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    target_epsilon: float = 8.0
    target_delta: float = 1e-5
    dataset_size: Optional[int] = None
    expected_batch_size: Optional[int] = None
    accountant: Optional[str] = None  # "rdp" (server default) or "prv"
    sampling: Optional[str] = None  # "client" (server default) or "server"
    dataset_id: Optional[str] = None  # with sampling "server"

    def to_dict(self) -> Dict[str, Any]:
        return _compact(dataclasses.asdict(self))


@dataclass
class OptimizerConfig:
    """AdamW. None takes the server's default (learning_rate 1e-4, betas 0.9/0.999, eps 1e-8, weight_decay 0.01)."""

    learning_rate: Optional[float] = None
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    eps: Optional[float] = None
    weight_decay: Optional[float] = None
    warmup_steps: Optional[int] = None
    schedule: Optional[str] = None  # "constant" or "cosine"
    total_steps: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return _compact(dataclasses.asdict(self))


@dataclass
class LossSpec:
    """A server-side loss and its keyword arguments: ``LossSpec("ppo", {"clip_low_threshold": 0.8})``."""

    type: str
    kwargs: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"type": self.type}
        if self.kwargs:
            d["kwargs"] = dict(self.kwargs)
        return d


LossLike = Union[str, LossSpec, Mapping[str, Any], None]


def loss_dict(loss: LossLike, kwargs: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """The wire form of a loss given as a name, a LossSpec or a dict (kwargs merged in)."""
    if loss is None:
        if kwargs:
            raise ValueError("loss_kwargs: given without a loss")
        return None
    if isinstance(loss, str):
        d: Dict[str, Any] = {"type": loss}
    elif isinstance(loss, LossSpec):
        d = loss.to_dict()
    elif isinstance(loss, Mapping):
        d = {"type": loss.get("type")}
        if loss.get("kwargs"):
            d["kwargs"] = dict(loss["kwargs"])
        extra = set(loss) - {"type", "kwargs"}
        if extra:
            raise ValueError("loss: unknown keys %s (want type, kwargs)" % sorted(extra))
    else:
        raise TypeError("loss: must be a name, a LossSpec or a dict, got %s" % type(loss).__name__)
    if not isinstance(d.get("type"), str) or not d["type"]:
        raise ValueError("loss.type: must be a non-empty string")
    if kwargs:
        merged = dict(d.get("kwargs") or {})
        merged.update(kwargs)
        d["kwargs"] = merged
    return d


@dataclass
class TrainingConfig:
    """Configuration of a new training client (POST /api/v1/training_clients).

    ``model_ref`` is accepted as the original SDK's name for ``base_model``, and
    ``batch_size`` as the expected batch size of ``dp_config`` when that is not
    set. ``base_model`` is a model *name* the server knows (``"tensafe-tiny"``
    or one its operator registered), never a path.
    """

    base_model: Optional[str] = None
    lora_config: LoRAConfig = field(default_factory=LoRAConfig)
    dp_config: DPConfig = field(default_factory=DPConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    loss: LossLike = None
    seed: int = 0
    model_ref: Optional[str] = None
    batch_size: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        if self.base_model and self.model_ref and self.base_model != self.model_ref:
            raise ValueError("model_ref: %r differs from base_model %r; set one" % (self.model_ref, self.base_model))
        dp = self.dp_config.to_dict()
        if self.batch_size is not None:
            if self.dp_config.expected_batch_size not in (None, self.batch_size):
                raise ValueError("batch_size: differs from dp_config.expected_batch_size; set one")
            dp["expected_batch_size"] = self.batch_size
        d: Dict[str, Any] = {
            "base_model": self.base_model or self.model_ref or TINY_MODEL,
            "lora_config": self.lora_config.to_dict(),
            "dp_config": dp,
        }
        opt = self.optimizer.to_dict()
        if opt:
            d["optimizer"] = opt
        ld = loss_dict(self.loss)
        if ld is not None:
            d["loss"] = ld
        if self.seed:
            d["seed"] = self.seed
        return d


@dataclass
class SamplingParams:
    """Generation settings of ``sample`` (docs/API.md, SampleRequest).

    ``temperature`` 0 is greedy. ``top_p``/``top_k`` None: no nucleus/top-k
    filter. ``n`` sequences per prompt (1…64). ``stop`` strings and
    ``stop_token_ids`` end a sequence.
    """

    max_tokens: int = 64
    temperature: float = 1.0
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    stop: Optional[List[str]] = None
    stop_token_ids: Optional[List[int]] = None
    n: int = 1
    seed: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return _compact(
            {
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "top_k": self.top_k,
                "stop": list(self.stop) if self.stop else None,
                "stop_token_ids": list(self.stop_token_ids) if self.stop_token_ids else None,
                "n": self.n,
                "seed": self.seed,
            }
        )


def from_dict(cls: Type[T], d: Any) -> T:
    """Build the result dataclass ``cls`` from a decoded JSON object, ignoring unknown fields."""
    if not isinstance(d, dict):
        raise MalformedResponse("tensafe: %s: want a JSON object, got %s" % (cls.__name__, type(d).__name__))
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ForwardBackwardResult:
    """Result of forward_backward: loss (mean over the batch), per-example losses and clipping."""

    loss: float = 0.0
    per_example_loss: List[float] = field(default_factory=list)
    tokens: int = 0
    per_example_grad_norms: Optional[List[float]] = None
    fraction_clipped: float = 0.0
    pending_examples: int = 0
    metrics: Optional[Dict[str, float]] = None


@dataclass
class ForwardResult:
    """Result of forward: per-token log-probabilities aligned with input_ids, and per-example losses."""

    logprobs: List[List[float]] = field(default_factory=list)
    per_example_loss: List[float] = field(default_factory=list)


@dataclass
class OptimStepResult:
    """Result of optim_step: the noisy update and the privacy spent after it."""

    step: int = 0
    learning_rate: float = 0.0
    examples: int = 0
    noise_std: float = 0.0
    epsilon_spent: float = 0.0
    delta: float = 0.0


@dataclass
class Sequence:
    """One generated sequence. ``prompt_index`` says which of the prompts it continues."""

    tokens: List[int] = field(default_factory=list)
    text: str = ""
    logprobs: List[float] = field(default_factory=list)
    finish_reason: str = ""
    prompt_index: int = 0

    @property
    def completion(self) -> str:
        """The generated text (the original SDK's name for ``text``)."""
        return self.text


@dataclass
class SampleResult:
    """The sequences of a ``sample`` call, prompt by prompt (``n`` per prompt)."""

    sequences: List[Sequence] = field(default_factory=list)

    @property
    def samples(self) -> List[Sequence]:
        """The original SDK's name for ``sequences``."""
        return self.sequences


@dataclass
class SaveStateResult:
    """Result of save_state: the encrypted checkpoint artifact."""

    artifact_id: str = ""
    content_hash: str = ""
    size: int = 0
    step: int = 0


@dataclass
class LoadStateResult:
    """Result of load_state: the restored step and privacy spent, and the checkpoint's metadata."""

    artifact_id: str = ""
    step: int = 0
    epsilon_spent: float = 0.0
    metadata: Optional[Dict[str, Any]] = None


@dataclass
class Dataset:
    """A registered dataset: its metadata (never its rows). ``content_hash`` is the
    dataset fingerprint of a server-poisson DP certificate."""

    id: str = ""
    name: str = ""
    rows: int = 0
    tokens: int = 0
    base_model: Optional[str] = None  # the tokenizer of text rows
    content_hash: str = ""
    size: int = 0
    key_id: str = ""
    created_at: str = ""
    expires_at: Optional[str] = None


@dataclass
class TrainStepResult:
    """Result of train_step: one server-drawn Poisson batch, its forward_backward and optim_step.

    ``examples`` is how many rows the draw took (0: a noise-only step); ``dataset_rows``
    and ``sampling_rate`` are the draw's n and q.
    """

    step: int = 0
    examples: int = 0
    dataset_rows: int = 0
    sampling_rate: float = 0.0
    loss: float = 0.0
    tokens: int = 0
    fraction_clipped: float = 0.0
    learning_rate: float = 0.0
    noise_std: float = 0.0
    epsilon_spent: float = 0.0
    delta: float = 0.0


@dataclass
class DPMetrics:
    """What a client's privacy budget has spent and how."""

    epsilon_spent: float = 0.0
    epsilon_remaining: float = 0.0
    target_epsilon: float = 0.0
    delta: float = 0.0
    steps: int = 0
    noise_multiplier: float = 0.0
    sampling_rate: float = 0.0
    sampling_source: str = ""
    accountant: str = ""
    conversion: Optional[str] = None


@dataclass
class Artifact:
    """A stored artifact (an encrypted checkpoint). Its storage location is never shown."""

    id: str = ""
    client_id: Optional[str] = None
    kind: str = ""
    name: str = ""
    size: int = 0
    content_hash: str = ""
    key_id: str = ""
    created_at: str = ""


@dataclass
class PackageResult:
    """A TenSafe Secure Package made of a checkpoint (POST /api/v1/artifacts/{id}/package).

    ``artifact`` is the new artifact (kind ``tssp``) to download; the rest is
    what its signed manifest says. Verify the downloaded package against a
    pinned signer key before trusting it.
    """

    artifact: Artifact = field(default_factory=Artifact)
    package_id: str = ""
    signer: str = ""
    recipients: List[str] = field(default_factory=list)
    weights_sha256: str = ""
    epsilon: float = 0.0
    delta: float = 0.0
    steps: int = 0


@dataclass
class Signer:
    """The server's package signing key and audit checkpoint key (GET /api/v1/signer); pin them out of band."""

    key_id: str = ""
    public_key: str = ""
    audit_public_key: str = ""


@dataclass
class DownloadedArtifact:
    """An artifact written to ``path`` by ``download_artifact``: its size and checked content hash."""

    path: str = ""
    size: int = 0
    content_hash: str = ""


@dataclass
class TrainingClientInfo:
    """A training client as the server describes it (``config`` has the defaults filled in)."""

    id: str = ""
    base_model: str = ""
    config: Dict[str, Any] = field(default_factory=dict)
    status: str = ""
    step: int = 0
    created_at: str = ""
    updated_at: str = ""


@dataclass
class AuditEntry:
    """One entry of the hash-chained audit log (docs/AUDIT_LOG.md): metadata only."""

    seq: int = 0
    time: str = ""
    tenant_id: str = ""
    actor: str = ""
    operation: str = ""
    resource: str = ""
    outcome: str = ""
    details: Optional[Dict[str, str]] = None
    prev_hash: str = ""
    entry_hash: str = ""
    v: int = 0


@dataclass
class AuditPage:
    """One page of the audit log; pass ``next_after`` as ``after`` for the next."""

    entries: List[AuditEntry] = field(default_factory=list)
    next_after: int = -1


@dataclass
class Tenant:
    """A tenant of the server."""

    id: str = ""
    name: str = ""
    created_at: str = ""


@dataclass
class APIKey:
    """An API key. ``token`` is set only when the key was just created (shown once; never in repr)."""

    id: str = ""
    tenant_id: str = ""
    role: str = ""
    prefix: str = ""
    created_at: str = ""
    revoked_at: Optional[str] = None
    token: Optional[str] = field(default=None, repr=False)


@dataclass
class TokenizeResult:
    """Token ids of texts under a model's tokenizer (POST /api/v1/tokenize)."""

    model: str = ""
    input_ids: List[List[int]] = field(default_factory=list)
    bos_token_id: Optional[int] = None
    eos_token_id: Optional[int] = None
