"""ServiceClient and TrainingClient: the training API of docs/API.md from Python.

A :class:`ServiceClient` talks to one server as one tenant's API key; a
:class:`TrainingClient` is one DP LoRA training session on it. Training
operations (``forward_backward``, ``forward``, ``optim_step``) return a
:class:`~tensafe.futures.FutureHandle` at once, so a caller can submit the
next batch while the server works; ``sample``, ``save_state`` and
``load_state`` wait and return their result. Every method has an ``*_async``
twin for asyncio code that awaits the final result.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import ssl
import tempfile
import threading
import urllib.parse
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence as Seq,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from . import errors
from ._transport import NEVER, REFUSED_ONLY, RetryPolicy, Transport
from .futures import POLL_WAIT, FutureHandle
from .types import (
    APIKey,
    Artifact,
    AuditEntry,
    AuditPage,
    Dataset,
    DownloadedArtifact,
    DPMetrics,
    ForwardBackwardResult,
    ForwardResult,
    LoadStateResult,
    LossLike,
    OptimStepResult,
    PackageResult,
    SampleResult,
    SamplingParams,
    SaveStateResult,
    Sequence,
    Signer,
    Tenant,
    TINY_MODEL,
    TokenizeResult,
    TrainingClientInfo,
    TrainingConfig,
    TrainStepResult,
    from_dict,
    loss_dict,
)

__all__ = ["ServiceClient", "TrainingClient", "Batch", "Prompt", "CustomLossFn"]

T = TypeVar("T")

Batch = Mapping[str, Any]
"""A batch: ``{"input_ids": [[...]], "labels": [[...]], ...}`` (docs/API.md, Batch).

Values may be lists or anything with ``tolist()`` (NumPy arrays, tensors)."""

Prompt = Union[str, Seq[int]]
"""A prompt: text (encoded by the server's tokenizer) or token ids."""

CustomLossFn = Callable[[List[List[float]]], Tuple[Seq[float], Seq[Seq[float]]]]
"""``loss_fn(logprobs) -> (losses, grads)``: per-example losses and d loss / d logprob per token."""


def _listify(v: Any) -> Any:
    if hasattr(v, "tolist") and callable(v.tolist):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_listify(x) for x in v]
    return v


def _batch_dict(batch: Batch) -> Dict[str, Any]:
    if not isinstance(batch, Mapping):
        raise TypeError("batch: must be a mapping such as {'input_ids': [[...]], 'labels': [[...]]}")
    out: Dict[str, Any] = {}
    for k, v in batch.items():
        if not isinstance(k, str):
            raise TypeError("batch: keys must be strings")
        if v is None:
            continue
        out[k] = _listify(v)
    return out


def _pid(id: str, what: str) -> str:
    if not isinstance(id, str) or not id:
        raise ValueError("%s: must be a non-empty string" % what)
    return urllib.parse.quote(id, safe="")


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


class ServiceClient:
    """A client of one TenSafe server, as one API key.

    ``ServiceClient("http://127.0.0.1:8080", api_key)``; ``api_key`` None reads
    the ``TENSAFE_API_KEY`` environment variable. The key is sent only as
    ``Authorization: Bearer`` and never appears in errors or reprs.

    Requests are retried on 429, 5xx and lost connections with jittered
    exponential backoff (``retry``); submissions carry an idempotency key, so a
    retried submission never runs twice.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        api_key: Optional[str] = None,
        *,
        retry: Optional[RetryPolicy] = None,
        timeout: float = 60.0,
        poll_wait: float = POLL_WAIT,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        if api_key is None:
            api_key = os.environ.get("TENSAFE_API_KEY", "").strip()
        if not api_key:
            raise ValueError("api_key: required (or set TENSAFE_API_KEY)")
        self._t = Transport(base_url, api_key, retry=retry, timeout=timeout, ssl_context=ssl_context)
        self._poll_wait = poll_wait
        self.base_url = self._t.base_url

    def __repr__(self) -> str:
        return "ServiceClient(%r)" % self.base_url

    def close(self) -> None:
        """Close the kept-alive connections (a later request opens a new one)."""
        self._t.close()

    def __enter__(self) -> "ServiceClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- training clients --------------------------------------------------

    def create_training_client(
        self, config: Union[TrainingConfig, Mapping[str, Any]], *, idempotency_key: Optional[str] = None
    ) -> "TrainingClient":
        """Create a training client (POST /api/v1/training_clients).

        The server deduplicates creations by ``Idempotency-Key`` (a random one per
        call, or ``idempotency_key``), so 5xx answers and lost connections are
        retried: a retry of a creation that happened returns the same client. A
        caller that persisted its key can call again after a crash and get the
        client back. The same key with another configuration raises
        :class:`~tensafe.errors.Conflict` (``field`` "Idempotency-Key").
        """
        body = config.to_dict() if isinstance(config, TrainingConfig) else dict(config)
        info = from_dict(
            TrainingClientInfo,
            self._t.request("POST", "/api/v1/training_clients", body=body, idempotency_key=idempotency_key),
        )
        return TrainingClient(self, info)

    def get_training_client(self, client_id: str) -> "TrainingClient":
        """An existing training client by id (NotFound for a missing one or another tenant's)."""
        info = from_dict(TrainingClientInfo, self._t.request("GET", "/api/v1/training_clients/" + _pid(client_id, "client_id")))
        return TrainingClient(self, info)

    def future(self, future_id: str, decode: Optional[Callable[[Any], Any]] = None) -> FutureHandle[Any]:
        """Resume waiting on an operation submitted earlier (for example by another process).

        ``decode`` turns the raw result (a dict) into what ``result()`` returns; default: the dict.
        """
        st = self._t.request("GET", "/api/v1/futures/" + _pid(future_id, "future_id"))
        return FutureHandle(self._t, st, decode or _identity, poll_wait=self._poll_wait)

    # -- datasets (server-sampled training) ----------------------------------

    def create_dataset(self, examples: Seq[Mapping[str, Any]], name: Optional[str] = None,
                       base_model: Optional[str] = None) -> Dataset:
        """Register a dataset (POST /api/v1/datasets), sealed on the server under the tenant's key.

        ``examples`` are rows ``{"input_ids": [...], "labels": [...], "weights": [...]}``
        (labels default to input_ids, weights to 1; values may be anything with
        ``tolist()``), or text rows ``{"text": ...}`` / ``{"prompt": ..., "completion": ...}``
        that the server tokenizes with ``base_model``'s tokenizer (the prompt is not
        trained on). A client created with ``DPConfig(sampling="server",
        dataset_id=ds.id)`` trains on it with ``train_step``. Not deduplicated by
        the server, so retried only on 429.
        """
        rows = []
        for i, e in enumerate(examples):
            if not isinstance(e, Mapping):
                raise TypeError("examples[%d]: want a mapping with input_ids, got %s" % (i, type(e).__name__))
            rows.append({k: _listify(v) for k, v in e.items() if v is not None})
        body: Dict[str, Any] = {"examples": rows}
        if name is not None:
            body["name"] = name
        if base_model is not None:
            body["base_model"] = base_model
        return from_dict(Dataset, self._t.request("POST", "/api/v1/datasets", body=body, mode=REFUSED_ONLY))

    def get_dataset(self, dataset_id: str) -> Dataset:
        """A dataset's metadata: rows, tokens, content hash (never its rows)."""
        return from_dict(Dataset, self._t.request("GET", "/api/v1/datasets/" + _pid(dataset_id, "dataset_id")))

    def delete_dataset(self, dataset_id: str) -> None:
        """Delete a dataset; clients that sample from it fail their next train_step (FailedPrecondition)."""
        self._t.request("DELETE", "/api/v1/datasets/" + _pid(dataset_id, "dataset_id"))

    # -- artifacts -----------------------------------------------------------

    def list_artifacts(self) -> List[Artifact]:
        """The tenant's artifacts (encrypted checkpoints)."""
        out = self._t.request("GET", "/api/v1/artifacts")
        if not isinstance(out, list):
            raise errors.MalformedResponse("tensafe: artifacts: want a JSON array")
        return [from_dict(Artifact, a) for a in out]

    def get_artifact(self, artifact_id: str) -> Artifact:
        """One artifact's description."""
        return from_dict(Artifact, self._t.request("GET", "/api/v1/artifacts/" + _pid(artifact_id, "artifact_id")))

    @overload
    def download_artifact(self, artifact_id: str) -> bytes: ...

    @overload
    def download_artifact(
        self, artifact_id: str, path: Union[str, "os.PathLike[str]"], *, overwrite: bool = False
    ) -> DownloadedArtifact: ...

    def download_artifact(
        self, artifact_id: str, path: Optional[Union[str, "os.PathLike[str]"]] = None, *, overwrite: bool = False
    ) -> Union[bytes, DownloadedArtifact]:
        """Download an artifact's decrypted bytes (GET .../download; audited).

        Without ``path`` the bytes are returned (up to 64 MiB). With ``path`` they
        are streamed to a temporary file next to it (mode 0600) and checked
        against the server's ``X-Content-Hash`` (SHA-256) before the file is
        moved into place, atomically; a mismatch raises
        :class:`~tensafe.errors.ContentHashMismatch` and writes nothing. An
        existing ``path`` is refused (``FileExistsError``) unless ``overwrite``.
        Either way the bytes are checked against the hash.
        """
        route = "/api/v1/artifacts/%s/download" % _pid(artifact_id, "artifact_id")
        if path is None:
            got: Dict[str, Any] = {}

            def begin_mem(headers: Any) -> Callable[[bytes], None]:
                got["hash"], got["buf"] = headers.get("X-Content-Hash"), bytearray()
                buf: bytearray = got["buf"]

                def sink(b: bytes) -> None:
                    if len(buf) + len(b) > _MAX_DOWNLOAD_BYTES:
                        raise errors.MalformedResponse(
                            "tensafe: artifact %s: over %d bytes: download it to a path" % (artifact_id, _MAX_DOWNLOAD_BYTES)
                        )
                    buf.extend(b)

                return sink

            self._t.stream(route, begin_mem)
            data = bytes(got["buf"])
            _check_hash(artifact_id, got["hash"], "sha256:" + hashlib.sha256(data).hexdigest())
            return data
        return _download_to(self._t, route, artifact_id, os.fspath(path), overwrite)

    # -- packages (docs/API.md "Packages") -----------------------------------

    def package_artifact(self, artifact_id: str, recipients: Seq[str], name: Optional[str] = None) -> PackageResult:
        """Package checkpoint ``artifact_id`` as a TenSafe Secure Package (POST .../package).

        ``recipients``: recipient public keys (``tensafe-recipient-pub-v1:…``) and/or
        ``"tenant"`` for the tenant's own KEK; 1 to 64, no repeats (the server
        checks them and names ``recipients[i]``). ``name`` defaults to the
        checkpoint's name + ``.tssp``. The package is a new artifact: fetch it
        with ``download_artifact(result.artifact.id, path)`` and verify it
        against a pinned :meth:`signer` key. The server does not deduplicate
        packaging, so only a 429 is retried.
        """
        if isinstance(recipients, (str, bytes)):
            raise TypeError("recipients: must be a list of recipient public keys or \"tenant\", not a single string")
        rs = list(recipients)
        for i, r in enumerate(rs):
            if not isinstance(r, str):
                raise TypeError("recipients[%d]: must be a str" % i)
        body: Dict[str, Any] = {"recipients": rs}
        if name is not None:
            body["name"] = name
        path = "/api/v1/artifacts/%s/package" % _pid(artifact_id, "artifact_id")
        d = self._t.request("POST", path, body=body, mode=REFUSED_ONLY)
        res = from_dict(PackageResult, d)
        res.artifact = from_dict(Artifact, d.get("artifact"))
        res.recipients = list(res.recipients or [])
        return res

    def signer(self) -> Signer:
        """The server's package signing key and audit checkpoint key (GET /api/v1/signer).

        A key fetched from the server that made a package proves only that both
        came from it: pin the keys out of band where you can.
        """
        return from_dict(Signer, self._t.request("GET", "/api/v1/signer"))

    # -- audit ---------------------------------------------------------------

    def audit_logs(self, after: Optional[int] = None, limit: Optional[int] = None) -> AuditPage:
        """One page of the tenant's audit entries with seq > ``after`` (None: from the start)."""
        q: Dict[str, Any] = {}
        if after is not None and after >= 0:
            q["after"] = int(after)
        if limit:
            q["limit"] = int(limit)
        d = self._t.request("GET", "/api/v1/audit", query=q)
        if not isinstance(d, dict) or not isinstance(d.get("entries"), list):
            raise errors.MalformedResponse("tensafe: audit: unexpected answer")
        nxt = d.get("next_after", -1)
        if after is not None and nxt < after:
            nxt = after
        return AuditPage(entries=[from_dict(AuditEntry, e) for e in d["entries"]], next_after=nxt)

    def iter_audit_logs(self, after: Optional[int] = None, page_size: int = 1000) -> Iterator[AuditEntry]:
        """Every audit entry of the tenant after ``after``, page by page."""
        cur = -1 if after is None else after
        while True:
            page = self.audit_logs(cur, page_size)
            yield from page.entries
            if page.next_after <= cur:
                return
            cur = page.next_after

    def verify_audit(self) -> Dict[str, Any]:
        """Ask the server to verify its audit log's hash chain and signed checkpoints.

        A log that does not verify is an answer (``verified`` False, ``error`` set), not an exception.
        """
        out: Dict[str, Any] = self._t.request("GET", "/api/v1/audit/verify")
        return out

    # -- tokenizer -----------------------------------------------------------

    def tokenize(self, texts: Seq[str], model: str = TINY_MODEL, add_special_tokens: bool = False) -> TokenizeResult:
        """Token ids of ``texts`` under ``model``'s tokenizer (special-token text stays text)."""
        if isinstance(texts, str):
            texts = [texts]
        body = {"model": model, "texts": list(texts), "add_special_tokens": bool(add_special_tokens)}
        return from_dict(TokenizeResult, self._t.request("POST", "/api/v1/tokenize", body=body))

    def detokenize(self, input_ids: Seq[Seq[int]], model: str = TINY_MODEL) -> List[str]:
        """Texts of token id sequences under ``model``'s tokenizer."""
        body = {"model": model, "input_ids": _listify(input_ids)}
        d = self._t.request("POST", "/api/v1/detokenize", body=body)
        if not isinstance(d, dict) or not isinstance(d.get("texts"), list):
            raise errors.MalformedResponse("tensafe: detokenize: unexpected answer")
        return list(d["texts"])

    # -- administration ------------------------------------------------------

    def create_tenant(self, name: str, *, idempotency_key: Optional[str] = None) -> Tenant:
        """Create a tenant (an operator admin key: the one ``tensafe serve`` writes to <data-dir>/admin.key).

        Deduplicated by ``Idempotency-Key`` like :meth:`create_training_client`, so
        retried on 5xx and lost connections; the same key with another name
        raises :class:`~tensafe.errors.Conflict`.
        """
        d = self._t.request("POST", "/api/v1/tenants", body={"name": name}, idempotency_key=idempotency_key)
        return from_dict(Tenant, d)

    def create_api_key(self, tenant_id: str, role: str = "trainer") -> APIKey:
        """Create an API key of a tenant with role admin, trainer or viewer. Keep ``.token``: it is shown once.

        Retried on 429 only: the server keeps only the token's hash, so it cannot
        answer a replay with the token and does not deduplicate key creations.
        """
        path = "/api/v1/tenants/%s/api_keys" % _pid(tenant_id, "tenant_id")
        return from_dict(APIKey, self._t.request("POST", path, body={"role": role}, mode=REFUSED_ONLY))

    def revoke_api_key(self, key_id: str) -> None:
        """Revoke an API key; requests with it answer 401 from then on."""
        self._t.request("DELETE", "/api/v1/api_keys/" + _pid(key_id, "key_id"))

    def ready(self) -> None:
        """Return if the server is ready to take work (GET /readyz); raise otherwise. One try."""
        self._t.request("GET", "/readyz", mode=NEVER)

    # -- asyncio twins -------------------------------------------------------

    async def create_training_client_async(self, config: Union[TrainingConfig, Mapping[str, Any]]) -> "TrainingClient":
        return await _in_thread(self.create_training_client, config)

    async def get_training_client_async(self, client_id: str) -> "TrainingClient":
        return await _in_thread(self.get_training_client, client_id)

    async def list_artifacts_async(self) -> List[Artifact]:
        return await _in_thread(self.list_artifacts)

    async def audit_logs_async(self, after: Optional[int] = None, limit: Optional[int] = None) -> AuditPage:
        return await _in_thread(self.audit_logs, after, limit)

    async def package_artifact_async(self, artifact_id: str, recipients: Seq[str], name: Optional[str] = None) -> PackageResult:
        return await _in_thread(self.package_artifact, artifact_id, recipients, name)

    async def signer_async(self) -> Signer:
        return await _in_thread(self.signer)

    async def download_artifact_async(
        self, artifact_id: str, path: Union[str, "os.PathLike[str]"], *, overwrite: bool = False
    ) -> DownloadedArtifact:
        return await _in_thread(self.download_artifact, artifact_id, path, overwrite=overwrite)

    async def create_dataset_async(self, examples: Seq[Mapping[str, Any]], name: Optional[str] = None,
                                   base_model: Optional[str] = None) -> Dataset:
        return await _in_thread(self.create_dataset, examples, name, base_model)

    async def get_dataset_async(self, dataset_id: str) -> Dataset:
        return await _in_thread(self.get_dataset, dataset_id)

    async def delete_dataset_async(self, dataset_id: str) -> None:
        await _in_thread(self.delete_dataset, dataset_id)

    async def tokenize_async(self, texts: Seq[str], model: str = TINY_MODEL, add_special_tokens: bool = False) -> TokenizeResult:
        return await _in_thread(self.tokenize, texts, model, add_special_tokens)


_MAX_DOWNLOAD_BYTES = 64 << 20  # download_artifact without a path


def _check_hash(artifact_id: str, want: Optional[str], got: str) -> None:
    if not want:
        raise errors.MalformedResponse("tensafe: artifact %s: the download has no X-Content-Hash" % artifact_id)
    if want != got:
        raise errors.ContentHashMismatch(
            "tensafe: artifact %s: downloaded bytes hash to %s, the server announced %s"
            % (artifact_id, got, errors.printable(want, 80))
        )


def _download_to(t: Transport, route: str, artifact_id: str, path: str, overwrite: bool) -> DownloadedArtifact:
    """Stream route into a temporary file beside path, check its hash, fsync and move it into place."""
    if not overwrite and os.path.lexists(path):
        raise FileExistsError("download_artifact: %s exists (pass overwrite=True to replace it)" % path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part", dir=d)  # mode 0600
    f = os.fdopen(fd, "wb")
    st: Dict[str, Any] = {}
    try:
        def begin(headers: Any) -> Callable[[bytes], None]:
            f.seek(0)
            f.truncate()
            st["want"], st["h"], st["n"] = headers.get("X-Content-Hash"), hashlib.sha256(), 0

            def sink(b: bytes) -> None:
                f.write(b)
                st["h"].update(b)
                st["n"] += len(b)

            return sink

        t.stream(route, begin)
        got = "sha256:" + st["h"].hexdigest()
        _check_hash(artifact_id, st["want"], got)
        f.flush()
        os.fsync(f.fileno())
        f.close()
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # atomic, and never over a file created meanwhile
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if os.path.lexists(path):
                    raise FileExistsError("download_artifact: %s exists" % path) from None
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        tmp = ""
        _sync_dir(d)
        return DownloadedArtifact(path=path, size=st["n"], content_hash=got)
    finally:
        if not f.closed:
            f.close()
        if tmp:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _sync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _decode_sample(prompt_index: int) -> Callable[[Any], List[Sequence]]:
    def decode(r: Any) -> List[Sequence]:
        if not isinstance(r, dict) or not isinstance(r.get("sequences"), list):
            raise errors.MalformedResponse("tensafe: sample: unexpected result")
        out = []
        for s in r["sequences"]:
            seq = from_dict(Sequence, s)
            seq.prompt_index = prompt_index
            out.append(seq)
        return out

    return decode


def _identity(r: Any) -> Any:
    return r


def _decoder(cls: Any) -> Callable[[Any], Any]:
    return lambda r: from_dict(cls, r)


class TrainingClient:
    """One DP LoRA training session on the server (made by ``ServiceClient.create_training_client``).

    The server runs one client's operations in submission order. Reads
    (``get_dp_metrics``, ``refresh``) first wait for the operations this object
    submitted, so ``tc.optim_step(); tc.get_dp_metrics()`` sees the step.
    """

    def __init__(self, service: ServiceClient, info: TrainingClientInfo) -> None:
        if not info.id:
            raise errors.MalformedResponse("tensafe: training client without an id")
        self.service = service
        self._t = service._t
        self.id = info.id
        self.info = info
        self._lock = threading.Lock()
        self._last: Optional[FutureHandle[Any]] = None  # the last operation this object submitted

    def __repr__(self) -> str:
        return "TrainingClient(id=%r, base_model=%r)" % (self.id, self.info.base_model)

    def _path(self, op: str = "") -> str:
        p = "/api/v1/training_clients/" + _pid(self.id, "client id")
        return p + "/" + op if op else p

    def _submit(self, op: str, body: Any, decode: Callable[[Any], T], idempotency_key: Optional[str]) -> FutureHandle[T]:
        st = self._t.request("POST", self._path(op), body=body, idempotency_key=idempotency_key)
        h: FutureHandle[T] = FutureHandle(self._t, st, decode, poll_wait=self.service._poll_wait)
        with self._lock:
            self._last = h
        return h

    def _settle(self) -> None:
        """Wait until every operation this object submitted has finished (failures are the handles' to report).

        The server runs one client's operations in submission order, so waiting
        for the last one submitted is enough.
        """
        with self._lock:
            last = self._last
        if last is None:
            return
        last.wait()
        with self._lock:
            if self._last is last:
                self._last = None

    # -- training ----------------------------------------------------------

    def forward_backward(
        self,
        batch: Batch,
        loss: LossLike = None,
        *,
        loss_kwargs: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
    ) -> FutureHandle[ForwardBackwardResult]:
        """Submit a forward and backward pass; per-example gradients are clipped and accumulated.

        ``loss`` is a server loss name (``"token_ce"``, ``"importance_sampling"``,
        ``"ppo"``…), a LossSpec or a dict; None uses the client's default.
        """
        body: Dict[str, Any] = {"batch": _batch_dict(batch)}
        ld = loss_dict(loss, loss_kwargs)
        if ld is not None:
            body["loss"] = ld
        return self._submit("forward_backward", body, _decoder(ForwardBackwardResult), idempotency_key)

    def forward(
        self,
        batch: Batch,
        loss: LossLike = None,
        *,
        loss_kwargs: Optional[Mapping[str, Any]] = None,
        idempotency_key: Optional[str] = None,
    ) -> FutureHandle[ForwardResult]:
        """Submit a forward pass: per-token log-probabilities and per-example losses, no gradients."""
        body: Dict[str, Any] = {"batch": _batch_dict(batch)}
        ld = loss_dict(loss, loss_kwargs)
        if ld is not None:
            body["loss"] = ld
        return self._submit("forward", body, _decoder(ForwardResult), idempotency_key)

    def forward_backward_custom(
        self,
        batch: Batch,
        loss_fn: CustomLossFn,
        *,
        idempotency_key: Optional[str] = None,
    ) -> FutureHandle[ForwardBackwardResult]:
        """A client-side loss over the logprobs of ``forward``, backpropagated by the server under DP.

        ``loss_fn(logprobs)`` gets the per-token log-probabilities ([B][T], aligned
        with ``input_ids`` as ``forward`` returns them) and returns ``(losses,
        grads)``: one loss per example (reported back only) and d loss_i / d
        logprob_t per token, same shape as ``logprobs``. The server
        backpropagates Σ_t g_t·logp_t per example, clips and accumulates like
        ``forward_backward``, so the update is as private as any other.
        """
        b = _batch_dict(batch)
        fwd = self.forward(b).result()
        out = loss_fn(fwd.logprobs)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError("loss_fn: must return (losses, grads)")
        losses, grads = _listify(out[0]), _listify(out[1])
        lps = fwd.logprobs
        if not isinstance(grads, list) or len(grads) != len(lps):
            raise ValueError("loss_fn: grads must have one row per example (%d), like logprobs" % len(lps))
        for i, (g, row) in enumerate(zip(grads, lps)):
            if not isinstance(g, list) or len(g) != len(row):
                raise ValueError("loss_fn: grads[%d] must have the shape of logprobs[%d] (%d values)" % (i, i, len(row)))
        body: Dict[str, Any] = {"batch": b, "logprob_grads": grads}
        if losses is not None:
            body["losses"] = [float(x) for x in losses]
        return self._submit("forward_backward_custom", body, _decoder(ForwardBackwardResult), idempotency_key)

    def optim_step(self, *, idempotency_key: Optional[str] = None) -> FutureHandle[OptimStepResult]:
        """Submit a DP optimizer step: Gaussian noise on the accumulated clipped gradients, then AdamW.

        Raises PrivacyBudgetExceeded at once when the step (after those already
        queued) would exceed the budget; nothing is queued then.
        """
        return self._submit("optim_step", {}, _decoder(OptimStepResult), idempotency_key)

    def train_step(self, loss: LossLike = None, *, loss_kwargs: Optional[Mapping[str, Any]] = None,
                   idempotency_key: Optional[str] = None) -> FutureHandle[TrainStepResult]:
        """Submit one server-sampled step (clients with ``DPConfig(sampling="server")`` only).

        The server draws a Poisson batch from the client's dataset (each row with
        probability q = expected_batch_size / rows), runs forward_backward with
        ``loss`` (None: the client's) and optim_step. Raises PrivacyBudgetExceeded
        at once like ``optim_step``, FailedPrecondition on a client-sampled client
        or when the dataset was deleted.
        """
        body: Dict[str, Any] = {}
        ld = loss_dict(loss, loss_kwargs)
        if ld is not None:
            body["loss"] = ld
        return self._submit("train_step", body, _decoder(TrainStepResult), idempotency_key)

    def sample(
        self,
        prompts: Union[Prompt, Seq[Prompt]],
        max_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        top_k: Optional[int] = None,
        stop: Optional[Seq[str]] = None,
        n: Optional[int] = None,
        seed: Optional[int] = None,
        *,
        sampling_params: Optional[SamplingParams] = None,
        stop_token_ids: Optional[Seq[int]] = None,
        idempotency_key: Optional[str] = None,
    ) -> SampleResult:
        """Generate from the current adapter: ``n`` sequences per prompt, in prompt order.

        A prompt is text (the server's tokenizer encodes it; special-token text
        stays text) or a list of token ids; ``prompts`` is one prompt or a list.
        Keyword settings override ``sampling_params`` (default SamplingParams()).
        """
        p = sampling_params.to_dict() if sampling_params is not None else SamplingParams().to_dict()
        for k, v in (("max_tokens", max_tokens), ("temperature", temperature), ("top_p", top_p), ("top_k", top_k), ("n", n), ("seed", seed)):
            if v is not None:
                p[k] = v
        if stop is not None:
            p["stop"] = [stop] if isinstance(stop, str) else list(stop)
        if stop_token_ids is not None:
            p["stop_token_ids"] = list(stop_token_ids)
        pl = _listify(prompts)
        if isinstance(pl, str) or (isinstance(pl, list) and pl and isinstance(pl[0], int)):
            plist: List[Any] = [pl]
        elif isinstance(pl, list):
            plist = pl
        else:
            raise TypeError("prompts: must be a text, a list of token ids, or a list of those")
        if not plist:
            raise ValueError("prompts: at least one prompt")
        handles = []
        for i, pr in enumerate(plist):
            body = dict(p)
            if isinstance(pr, str):
                body["prompt"] = pr
            else:
                body["prompt_tokens"] = [int(x) for x in _listify(pr)]
            key = None if idempotency_key is None else "%s.%d" % (idempotency_key, i)
            handles.append(self._submit("sample", body, _decode_sample(i), key))
        seqs: List[Sequence] = []
        for h in handles:
            seqs.extend(h.result())
        return SampleResult(sequences=seqs)

    # -- checkpoints -------------------------------------------------------

    def save_state(
        self,
        name: Optional[str] = None,
        include_optimizer: bool = True,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        idempotency_key: Optional[str] = None,
    ) -> SaveStateResult:
        """Save an encrypted checkpoint (AES-256-GCM under the tenant's key) and return its artifact.

        ``include_optimizer`` False leaves out the AdamW moments (load_state then
        starts them at zero); ``metadata`` (a JSON object ≤ 64 KiB) is stored inside
        the encrypted checkpoint and returned by load_state. Fails with
        FailedPrecondition while un-noised gradients are pending (call optim_step).
        """
        body: Dict[str, Any] = {}
        if name:
            body["name"] = name
        if not include_optimizer:
            body["include_optimizer"] = False
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise TypeError("metadata: must be a JSON object (a mapping)")
            body["metadata"] = dict(metadata)
        saved: SaveStateResult = self._submit("save_state", body, _decoder(SaveStateResult), idempotency_key).result()
        return saved

    def load_state(self, artifact_id: str, *, idempotency_key: Optional[str] = None) -> LoadStateResult:
        """Restore a checkpoint (adapter, optimizer, accountant and config) into this client."""
        body = {"artifact_id": artifact_id}
        loaded: LoadStateResult = self._submit("load_state", body, _decoder(LoadStateResult), idempotency_key).result()
        return loaded

    # -- reads -------------------------------------------------------------

    def refresh(self) -> TrainingClientInfo:
        """The client as the server describes it now (after this object's operations finished)."""
        self._settle()
        self.info = from_dict(TrainingClientInfo, self._t.request("GET", self._path()))
        return self.info

    def get_dp_metrics(self) -> DPMetrics:
        """Privacy spent and left: epsilon_spent, epsilon_remaining, delta, steps, …"""
        self._settle()
        return from_dict(DPMetrics, self._t.request("GET", self._path("dp_metrics")))

    def dp_certificate(self, raw: bool = False) -> Any:
        """The client's DP certificate (docs/DP_CERTIFICATE.md), computed from its stored accountant.

        ``raw`` returns its canonical JSON bytes (what a TSSP package signs) instead of a dict.
        """
        self._settle()
        return self._t.request("GET", self._path("dp_certificate"), raw=raw)

    def audit_logs(self) -> List[AuditEntry]:
        """The audit entries about this client (metadata only: never tokens, texts or keys)."""
        self._settle()
        return [e for e in self.service.iter_audit_logs() if e.resource == self.id]

    def delete(self) -> None:
        """Delete the client (its artifacts stay)."""
        self._t.request("DELETE", self._path())

    # -- asyncio twins: each awaits the final result -------------------------

    async def forward_backward_async(self, batch: Batch, loss: LossLike = None, **kw: Any) -> ForwardBackwardResult:
        return await _in_thread(lambda: self.forward_backward(batch, loss, **kw).result())

    async def forward_async(self, batch: Batch, loss: LossLike = None, **kw: Any) -> ForwardResult:
        return await _in_thread(lambda: self.forward(batch, loss, **kw).result())

    async def forward_backward_custom_async(self, batch: Batch, loss_fn: CustomLossFn, **kw: Any) -> ForwardBackwardResult:
        return await _in_thread(lambda: self.forward_backward_custom(batch, loss_fn, **kw).result())

    async def optim_step_async(self, **kw: Any) -> OptimStepResult:
        return await _in_thread(lambda: self.optim_step(**kw).result())

    async def train_step_async(self, loss: LossLike = None, **kw: Any) -> TrainStepResult:
        return await _in_thread(lambda: self.train_step(loss, **kw).result())

    async def sample_async(self, prompts: Union[Prompt, Seq[Prompt]], *args: Any, **kw: Any) -> SampleResult:
        return await _in_thread(self.sample, prompts, *args, **kw)

    async def save_state_async(self, name: Optional[str] = None, include_optimizer: bool = True,
                               metadata: Optional[Mapping[str, Any]] = None, **kw: Any) -> SaveStateResult:
        return await _in_thread(self.save_state, name, include_optimizer, metadata, **kw)

    async def load_state_async(self, artifact_id: str, **kw: Any) -> LoadStateResult:
        return await _in_thread(self.load_state, artifact_id, **kw)

    async def get_dp_metrics_async(self) -> DPMetrics:
        return await _in_thread(self.get_dp_metrics)

    async def audit_logs_async(self) -> List[AuditEntry]:
        return await _in_thread(self.audit_logs)
