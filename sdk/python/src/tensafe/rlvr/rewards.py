"""Verifiable rewards: a registry of reward functions resolved by name with validated keyword arguments.

Mirrors the Go package rlvr (rlvr/reward.go): the same built-ins with the same
kwargs and the same scores — ``keyword_contains``, ``length_penalty``,
``format_compliance`` (regular expression or a JSON Schema subset),
``exact_match``, ``numeric_match`` — plus the caller's own callables.

A reward is called as ``fn(prompt, completion, answer)`` and returns a float.
Rewards run where the caller runs: a reward may use data (reference answers,
unit tests) that never leaves the caller. Custom callables taking only
``(prompt, completion)`` are accepted too.

Difference from Go: ``format_compliance``'s ``regex`` is Python ``re`` syntax
(Go uses RE2); the common subset (classes, groups, quantifiers, alternation)
means the same in both.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "RewardFn",
    "RewardSpec",
    "RewardRegistry",
    "UnknownReward",
    "register_reward",
    "register_reward_func",
    "resolve_reward",
    "resolve_rewards",
    "reward_names",
    "last_number",
]

RewardFn = Callable[[str, str, str], float]
"""``fn(prompt, completion, answer) -> float``."""

Factory = Callable[..., RewardFn]
"""Builds a reward from keyword arguments; must reject unknown ones (TypeError or ValueError naming them)."""


class UnknownReward(KeyError):
    """A reward name nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; this is a message
        return str(self.args[0]) if self.args else "unknown reward"


@dataclass
class RewardSpec:
    """A reward by name, as training configs carry it: ``{"type", "kwargs", "weight"}``."""

    type: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    weight: Optional[float] = None


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _adapt(fn: Callable[..., float]) -> RewardFn:
    """A callable of (prompt, completion[, answer]) as a 3-argument reward."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return fn
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params) or len(positional) >= 3:
        return fn
    if len(positional) == 2:

        def two(prompt: str, completion: str, answer: str = "") -> float:
            return fn(prompt, completion)

        return two
    raise TypeError("reward callable must take (prompt, completion) or (prompt, completion, answer)")


def _check_kwargs(name: str, kwargs: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for k in kwargs:
        if k not in allowed:
            raise ValueError("reward %s: unknown kwarg %r (allowed: %s)" % (name, k, ", ".join(allowed)))


def _b2f(b: bool) -> float:
    return 1.0 if b else 0.0


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def keyword_contains(keywords: Sequence[str] = (), mode: str = "fraction", case_sensitive: bool = False) -> RewardFn:
    """The fraction (mode "fraction"), all ("all") or any ("any") of ``keywords`` found in the completion."""
    if isinstance(keywords, str) or not keywords:
        raise ValueError('kwarg "keywords": at least one keyword is required (a list of strings)')
    kws = []
    for i, k in enumerate(keywords):
        if not isinstance(k, str) or not k:
            raise ValueError('kwarg "keywords"[%d]: empty keyword' % i)
        kws.append(k if case_sensitive else k.lower())
    if mode not in ("fraction", "all", "any"):
        raise ValueError('kwarg "mode": %r, want fraction, all or any' % mode)

    def reward(prompt: str, completion: str, answer: str = "") -> float:
        text = completion if case_sensitive else completion.lower()
        found = sum(1 for k in kws if k in text)
        if mode == "all":
            return _b2f(found == len(kws))
        if mode == "any":
            return _b2f(found > 0)
        return found / len(kws)

    return reward


def length_penalty(target: Optional[int] = None, min: int = 0, scale: float = 1.0, unit: str = "chars") -> RewardFn:  # noqa: A002
    """−scale·max(0, n − target)/target, and with ``min`` also −scale·max(0, min − n)/min; 0 within bounds.

    n is the completion's length in characters (``unit`` "chars") or UTF-8 bytes ("bytes").
    """
    if not _is_int(target) or target < 1:  # type: ignore[operator]
        raise ValueError('kwarg "target": a length >= 1 is required')
    if not _is_int(min) or min < 0 or min > target:  # type: ignore[operator]
        raise ValueError('kwarg "min": must be in [0, target], got %r' % (min,))
    if not _is_num(scale) or scale < 0:
        raise ValueError('kwarg "scale": must be >= 0 and finite')
    if unit not in ("chars", "bytes"):
        raise ValueError('kwarg "unit": %r, want chars or bytes' % unit)
    t, lo = float(target), float(min)  # type: ignore[arg-type]

    def reward(prompt: str, completion: str, answer: str = "") -> float:
        n = float(len(completion) if unit == "chars" else len(completion.encode("utf-8")))
        p = 0.0
        if n > t:
            p += (n - t) / t
        if lo > 0 and n < lo:
            p += (lo - n) / lo
        return -scale * p

    return reward


def format_compliance(
    regex: Optional[str] = None,
    search: bool = False,
    json_schema: Optional[Mapping[str, Any]] = None,
    trim: bool = True,
) -> RewardFn:
    """1 when the completion matches ``regex`` (whole string unless ``search``) or is JSON valid under ``json_schema``; else 0.

    ``trim`` (default) strips surrounding white space first. The schema subset:
    type, properties, required, items, enum, additionalProperties, minimum,
    maximum, minLength, maxLength, minItems, maxItems; any other keyword is an
    error, so a schema never silently checks less than meant.
    """
    def prep(s: str) -> str:
        return s.strip() if trim else s

    if regex and json_schema is not None:
        raise ValueError('give kwarg "regex" or "json_schema", not both')
    if regex:
        try:
            rx = re.compile(regex)
        except re.error as e:
            raise ValueError('kwarg "regex": %s' % e) from None

        def matches(prompt: str, completion: str, answer: str = "") -> float:
            text = prep(completion)
            return _b2f((rx.search(text) if search else rx.fullmatch(text)) is not None)

        return matches
    if json_schema is not None:
        if search:
            raise ValueError('kwarg "search" applies to regex only')
        if not isinstance(json_schema, Mapping):
            raise ValueError('kwarg "json_schema": must be a schema object')
        sch = _Schema(json_schema, "json_schema")

        def reward(prompt: str, completion: str, answer: str = "") -> float:
            ok, v = _parse_json(prep(completion))
            return _b2f(ok and sch.check(v, "$") is None)

        return reward
    raise ValueError('kwarg "regex" or "json_schema" is required')


def exact_match(normalize: str = "strip") -> RewardFn:
    """1 when the completion equals the answer after normalization (strip, lower, none)."""
    if normalize not in ("strip", "lower", "none"):
        raise ValueError('kwarg "normalize": %r, want strip, lower or none' % normalize)

    def norm(s: str) -> str:
        if normalize == "strip":
            return s.strip()
        if normalize == "lower":
            return " ".join(s.lower().split())
        return s

    def reward(prompt: str, completion: str, answer: str = "") -> float:
        return _b2f(norm(completion) == norm(answer))

    return reward


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?")


def last_number(text: str) -> Optional[float]:
    """The last number written in ``text`` ("the answer is 1,234.5" → 1234.5; "3/4" → 0.75), or None."""
    for m in reversed(_NUMBER.findall(text)):
        m = m.replace(",", "")
        try:
            if "/" in m:
                a, b = m.split("/", 1)
                if float(b) == 0:
                    continue
                return float(a) / float(b)
            v = float(m)
        except ValueError:
            continue
        if math.isfinite(v):
            return v
    return None


def numeric_match(tolerance: float = 1e-6, rel_tolerance: float = 0.0) -> RewardFn:
    """1 when the completion's last number is within tolerance + rel_tolerance·|answer| of the answer's last number."""
    if not _is_num(tolerance) or tolerance < 0:
        raise ValueError('kwarg "tolerance": must be >= 0 and finite')
    if not _is_num(rel_tolerance) or rel_tolerance < 0:
        raise ValueError('kwarg "rel_tolerance": must be >= 0 and finite')

    def reward(prompt: str, completion: str, answer: str = "") -> float:
        want = last_number(answer)
        if want is None:
            a = answer if len(answer) <= 40 else answer[:40] + "…"
            raise ValueError("numeric_match: the reference answer %r has no number" % a)
        got = last_number(completion)
        if got is None:
            return 0.0
        return _b2f(abs(got - want) <= tolerance + rel_tolerance * abs(want))

    return reward


_BUILTINS: Dict[str, Tuple[Factory, Tuple[str, ...]]] = {
    "keyword_contains": (keyword_contains, ("keywords", "mode", "case_sensitive")),
    "length_penalty": (length_penalty, ("target", "min", "scale", "unit")),
    "format_compliance": (format_compliance, ("regex", "search", "json_schema", "trim")),
    "exact_match": (exact_match, ("normalize",)),
    "numeric_match": (numeric_match, ("tolerance", "rel_tolerance")),
}


class RewardRegistry:
    """Reward names → factories. Safe for concurrent use; a new registry holds the built-ins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._factories: Dict[str, Factory] = {}
        for name, (f, allowed) in _BUILTINS.items():
            self._factories[name] = self._checked(name, f, allowed)

    @staticmethod
    def _checked(name: str, f: Factory, allowed: Sequence[str]) -> Factory:
        def build(**kwargs: Any) -> RewardFn:
            _check_kwargs(name, kwargs, allowed)
            return f(**kwargs)

        return build

    def register(self, name: str, factory: Optional[Factory] = None) -> Any:
        """Register a reward factory under ``name`` (lower-case letters, digits, _); usable as a decorator.

        Built-in and already registered names cannot be replaced.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError("register reward %r: name must match %s" % (name, _NAME.pattern))

        def add(f: Factory) -> Factory:
            if not callable(f):
                raise TypeError("register reward %r: not callable" % name)
            with self._lock:
                if name in self._factories:
                    raise ValueError("register reward %r: already registered" % name)
                self._factories[name] = f
            return f

        return add if factory is None else add(factory)

    def register_func(self, name: str, fn: Optional[Callable[..., float]] = None) -> Any:
        """Register a reward callable that takes no kwargs; usable as a decorator."""

        def add(f: Callable[..., float]) -> Callable[..., float]:
            r = _adapt(f)

            def build(**kwargs: Any) -> RewardFn:
                if kwargs:
                    raise ValueError("reward %s takes no kwargs, got %r" % (name, sorted(kwargs)[0]))
                return r

            self.register(name, build)
            return f

        return add if fn is None else add(fn)

    def names(self) -> List[str]:
        """The registered names, sorted."""
        with self._lock:
            return sorted(self._factories)

    def resolve(self, spec: Union[str, RewardSpec, Mapping[str, Any], Callable[..., float]], **kwargs: Any) -> RewardFn:
        """Build the reward a name (with kwargs), a RewardSpec, a spec dict or a callable stands for."""
        weight: Optional[float] = None
        name: Any
        if callable(spec) and not isinstance(spec, (str, RewardSpec)):
            if kwargs:
                raise ValueError("kwargs given with a reward callable")
            return _adapt(spec)
        if isinstance(spec, RewardSpec):
            name, kw, weight = spec.type, dict(spec.kwargs or {}), spec.weight
        elif isinstance(spec, Mapping):
            extra = set(spec) - {"type", "kwargs", "weight"}
            if extra:
                raise ValueError("reward spec: unknown keys %s (want type, kwargs, weight)" % sorted(extra))
            name, kw, weight = spec.get("type"), dict(spec.get("kwargs") or {}), spec.get("weight")
        else:
            name, kw = spec, {}
        kw.update(kwargs)
        with self._lock:
            f = self._factories.get(name) if isinstance(name, str) else None
        if f is None:
            raise UnknownReward("rlvr: unknown reward %r (known: %s)" % (name, ", ".join(self.names())))
        try:
            fn = f(**kw)
        except TypeError as e:
            raise ValueError("rlvr: reward %s: %s" % (name, e)) from None
        except ValueError as e:
            raise ValueError("rlvr: reward %s: %s" % (name, e)) from None
        fn = _adapt(fn)
        if weight is not None:
            if not _is_num(weight):
                raise ValueError("rlvr: reward %s: weight must be finite" % name)
            inner, w = fn, float(weight)

            def weighted(prompt: str, completion: str, answer: str = "") -> float:
                return w * inner(prompt, completion, answer)

            return weighted
        return fn

    def resolve_all(self, specs: Sequence[Union[str, RewardSpec, Mapping[str, Any], Callable[..., float]]]) -> RewardFn:
        """The sum of several rewards (each scaled by its weight)."""
        if not specs:
            raise ValueError("rlvr: no reward given")
        fns = []
        for i, s in enumerate(specs):
            try:
                fns.append(self.resolve(s))
            except (ValueError, UnknownReward) as e:
                raise ValueError("rewards[%d]: %s" % (i, e)) from None
        if len(fns) == 1:
            return fns[0]

        def total(prompt: str, completion: str, answer: str = "") -> float:
            return sum(f(prompt, completion, answer) for f in fns)

        return total


_default = RewardRegistry()


def register_reward(name: str, factory: Optional[Factory] = None) -> Any:
    """Register a reward factory in the default registry (decorator or call)."""
    return _default.register(name, factory)


def register_reward_func(name: str, fn: Optional[Callable[..., float]] = None) -> Any:
    """Register a kwargs-less reward callable in the default registry (decorator or call)."""
    return _default.register_func(name, fn)


def resolve_reward(spec: Union[str, RewardSpec, Mapping[str, Any], Callable[..., float]], **kwargs: Any) -> RewardFn:
    """Build a reward from the default registry: ``resolve_reward("keyword_contains", keywords=["yes"])``."""
    return _default.resolve(spec, **kwargs)


def resolve_rewards(specs: Sequence[Union[str, RewardSpec, Mapping[str, Any], Callable[..., float]]]) -> RewardFn:
    """The weighted sum of rewards from the default registry."""
    return _default.resolve_all(specs)


def reward_names() -> List[str]:
    """Names in the default registry."""
    return _default.names()


# -- JSON Schema subset -------------------------------------------------------

_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_IGNORED = {"$schema", "title", "description", "$comment", "examples", "default"}
_SUPPORTED = ("type, properties, required, items, enum, additionalProperties, minimum, maximum, "
              "minLength, maxLength, minItems, maxItems")


def _parse_json(text: str) -> Tuple[bool, Any]:
    try:
        return True, json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return False, None


def _refuse_constant(name: str) -> Any:
    raise ValueError("not JSON: " + name)


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, str):
        return "string"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class _Schema:
    def __init__(self, m: Mapping[str, Any], path: str) -> None:
        self.types: List[str] = []
        self.properties: Dict[str, _Schema] = {}
        self.required: List[str] = []
        self.items: Optional[_Schema] = None
        self.enum: Optional[List[Any]] = None
        self.addl: Optional[_Schema] = None
        self.no_addl = False
        self.bounds: Dict[str, float] = {}
        for k in sorted(m):
            v, p = m[k], path + "." + k
            if k in _IGNORED:
                continue
            if k == "type":
                ts = [v] if isinstance(v, str) else v
                if not isinstance(ts, list) or not all(isinstance(t, str) for t in ts):
                    raise ValueError("%s: must be a string or a list of strings" % p)
                for t in ts:
                    if t not in _TYPES:
                        raise ValueError("%s: unknown type %r" % (p, t))
                self.types = list(ts)
            elif k == "properties":
                if not isinstance(v, Mapping):
                    raise ValueError("%s: must be an object" % p)
                for name, sub in v.items():
                    if not isinstance(sub, Mapping):
                        raise ValueError("%s.%s: must be a schema object" % (p, name))
                    self.properties[name] = _Schema(sub, p + "." + name)
            elif k == "required":
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise ValueError("%s: must be a list of strings" % p)
                self.required = list(v)
            elif k == "items":
                if not isinstance(v, Mapping):
                    raise ValueError("%s: must be a schema object" % p)
                self.items = _Schema(v, p)
            elif k == "enum":
                if not isinstance(v, list) or not v:
                    raise ValueError("%s: must be a non-empty list" % p)
                self.enum = list(v)
            elif k == "additionalProperties":
                if isinstance(v, bool):
                    self.no_addl = not v
                elif isinstance(v, Mapping):
                    self.addl = _Schema(v, p)
                else:
                    raise ValueError("%s: must be a boolean or a schema object" % p)
            elif k in ("minimum", "maximum"):
                if not _is_num(v):
                    raise ValueError("%s: must be a number" % p)
                self.bounds[k] = float(v)
            elif k in ("minLength", "maxLength", "minItems", "maxItems"):
                if not (_is_num(v) and v >= 0 and float(v) == int(v) and v <= 2**31 - 1):
                    raise ValueError("%s: must be a non-negative integer" % p)
                self.bounds[k] = int(v)
            else:
                raise ValueError("%s: keyword not supported (supported: %s)" % (p, _SUPPORTED))

    def check(self, v: Any, path: str) -> Optional[str]:
        t = _json_type(v)
        if self.types and not any(w == t or (w == "number" and t == "integer") for w in self.types):
            return "%s: %s, want %s" % (path, t, " or ".join(self.types))
        if self.enum is not None and not any(_json_equal(e, v) for e in self.enum):
            return "%s: not one of the enum values" % path
        b = self.bounds
        if t in ("integer", "number"):
            if "minimum" in b and v < b["minimum"]:
                return "%s: below minimum" % path
            if "maximum" in b and v > b["maximum"]:
                return "%s: above maximum" % path
        elif t == "string":
            n = len(v)
            if ("minLength" in b and n < b["minLength"]) or ("maxLength" in b and n > b["maxLength"]):
                return "%s: length %d out of bounds" % (path, n)
        elif t == "array":
            if ("minItems" in b and len(v) < b["minItems"]) or ("maxItems" in b and len(v) > b["maxItems"]):
                return "%s: %d items out of bounds" % (path, len(v))
            if self.items is not None:
                for i, e in enumerate(v):
                    err = self.items.check(e, "%s[%d]" % (path, i))
                    if err:
                        return err
        elif t == "object":
            for r in self.required:
                if r not in v:
                    return "%s: required property %r missing" % (path, r)
            for k, e in v.items():
                sub = self.properties.get(k)
                if sub is None:
                    if self.no_addl:
                        return "%s: additional property %r" % (path, k)
                    sub = self.addl
                if sub is not None:
                    err = sub.check(e, path + "." + k)
                    if err:
                        return err
        return None
