"""Request-time checks against the training data: each feature's range, categories and nulls.

A model's training snapshot carries a statistical profile (`seawall.data.profile`, plain JSON):
per column the range seen, the categories of a string or boolean column, and whether nulls or
infinities occurred. `ProfileRules.from_profile` compiles it, with the model's feature layout,
into rules over the request's tensors:

- numeric features: within `[min, max]` of training, widened by `margin` times the range on each
  side; NaN only if training had nulls; ±inf only if training had infinities;
- string and boolean features: one of the training categories, if training saw every value
  it had (`other_count` 0: a closed set); else any value.

`ProfileCheckPolicy` applies them after signature validation. In `reject` mode the first value
outside the rules gets a 400 naming its place (`inputs[0].data[3][2]`), the feature and the
rule; in `flag` mode the request is served and every broken rule is an `InputOutOfProfile`
event (counted by telemetry) and a log line (at most one per feature and rule per
`log_interval_s`, with the number suppressed meanwhile).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seawall.clock import Clock, SystemClock
from seawall.context import CallContext
from seawall.errors import ConfigError, InvalidInputError
from seawall.pipeline import EventSink, Handler, discard
from seawall.types import Datatype, InferenceRequest, InferenceResponse, ModelMetadata

__all__ = [
    "FeatureRule",
    "InputOutOfProfile",
    "ProfileCheckOptions",
    "ProfileCheckPolicy",
    "ProfileRules",
]

logger = logging.getLogger("seawall.policies")

DEFAULT_MODE: Literal["reject", "flag"] = "reject"
DEFAULT_MARGIN = 0.0
DEFAULT_LOG_INTERVAL_S = 60.0
_CATEGORICAL = ("string", "bool")


@dataclass(frozen=True, slots=True)
class ProfileCheckOptions:
    """What happens to a request outside the training profile."""

    #: "reject": 400 naming the field and rule; "flag": served, counted and logged.
    mode: Literal["reject", "flag"] = DEFAULT_MODE
    #: Fraction of a numeric feature's training range accepted beyond its min and max.
    margin: float = DEFAULT_MARGIN
    #: Flag mode logs each feature's broken rule at most once per this many seconds.
    log_interval_s: float = DEFAULT_LOG_INTERVAL_S

    def __post_init__(self) -> None:
        if self.mode not in ("reject", "flag"):
            raise ConfigError(f"mode: expected reject or flag, got {self.mode!r}")
        if not (math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"margin: must be a finite number >= 0, got {self.margin}")
        if not self.log_interval_s > 0:
            raise ConfigError(f"log_interval_s: must be > 0, got {self.log_interval_s}")


@dataclass(frozen=True, slots=True)
class InputOutOfProfile:
    """Values of one feature in one request broke a rule of the training profile."""

    target: str
    version: str
    feature: str
    #: "below_min", "above_max", "null", "infinite" or "category".
    rule: str
    #: "rejected" or "flagged".
    action: str
    count: int


@dataclass(frozen=True, slots=True)
class FeatureRule:
    """One feature's rule: where it is in the request, and what training saw."""

    name: str
    #: The input tensor holding it.
    input: str
    #: Its column in a 2-D input (None: the input is this feature alone).
    column: int | None
    low: float | None = None
    high: float | None = None
    allow_null: bool = True
    allow_infinite: bool = True
    #: The allowed values of a closed categorical feature (None: any).
    categories: frozenset[str] | None = None
    #: A string or boolean feature (checked by `categories` only).
    categorical: bool = False


@dataclass(frozen=True, slots=True)
class _Broken:
    feature: FeatureRule
    rule: str
    count: int
    #: Index (row, or row and column) of the first broken value, and the value.
    where: tuple[int, ...]
    value: Any


@dataclass(frozen=True)
class ProfileRules:
    """The rules of one model version's training profile (see the module doc)."""

    rules: tuple[FeatureRule, ...]
    #: Where the profile came from (a snapshot id, a file), for messages.
    source: str
    _numeric: dict[str, tuple[Any, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        numeric: dict[str, list[FeatureRule]] = {}
        for rule in self.rules:
            if not rule.categorical and rule.column is not None:
                numeric.setdefault(rule.input, []).append(rule)
        compiled = {name: _vectors(rules) for name, rules in numeric.items()}
        object.__setattr__(self, "_numeric", compiled)

    @classmethod
    def from_profile(
        cls,
        profile: Mapping[str, Any],
        signature: ModelMetadata,
        *,
        features: Sequence[str] | None = None,
        margin: float = DEFAULT_MARGIN,
        source: str = "profile",
    ) -> ProfileRules:
        """Rules for `signature`'s inputs from `profile` (`ConfigError` if they do not fit).

        A model with one 2-D input takes its columns as `features` (default: the profile's
        columns, in order, without the columns no input could hold); a model with several
        inputs takes each input as the feature of the same name.
        """
        columns = profile.get("columns")
        if not isinstance(columns, Mapping) or not columns:
            raise ConfigError(f"{source}: not a profile (no `columns`)")
        layout = _layout(signature, list(columns), features, source)
        rules = [
            _rule(name, input_name, column, columns[name], margin, source)
            for name, input_name, column in layout
        ]
        return cls(tuple(rules), source)

    def violations(self, request: InferenceRequest) -> list[_Broken]:
        """Every broken rule of `request`, with the first value that broke it."""
        by_name = {t.name: t for t in request.inputs}
        out: list[_Broken] = []
        for input_name, vectors in self._numeric.items():
            tensor = by_name.get(input_name)
            if tensor is not None and tensor.datatype is not Datatype.BYTES:
                out += _numeric_violations(tensor.data, vectors)
        for rule in self.rules:
            tensor = by_name.get(rule.input)
            vectorized = not rule.categorical and rule.column is not None
            if tensor is None or vectorized or (rule.categorical and rule.categories is None):
                continue
            out += _single_violations(rule, tensor.data)
        return out


def _vectors(rules: list[FeatureRule]) -> tuple[Any, ...]:
    columns = np.array([r.column for r in rules], dtype=np.intp)
    low = np.array([-np.inf if r.low is None else r.low for r in rules])
    high = np.array([np.inf if r.high is None else r.high for r in rules])
    null_ok = np.array([r.allow_null for r in rules])
    inf_ok = np.array([r.allow_infinite for r in rules])
    return tuple(rules), columns, low, high, null_ok, inf_ok


def _numeric_violations(data: npt.NDArray[Any], vectors: tuple[Any, ...]) -> list[_Broken]:
    rules, columns, low, high, null_ok, inf_ok = vectors
    if data.ndim != 2 or data.shape[1] <= int(columns.max()):
        return []  # the signature check refused it already, or the layout does not apply
    values = data[:, columns].astype(np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        checks = {
            "null": np.isnan(values) & ~null_ok,
            "infinite": np.isinf(values) & ~inf_ok,
            "below_min": (values < low) & ~np.isinf(values),
            "above_max": (values > high) & ~np.isinf(values),
        }
    out = []
    for rule, mask in checks.items():
        if not mask.any():
            continue
        counts = mask.sum(axis=0)
        for j in np.flatnonzero(counts):
            row = int(np.argmax(mask[:, j]))
            where = (row, int(columns[j]))
            out.append(_Broken(rules[j], rule, int(counts[j]), where, values[row, j].item()))
    return out


def _single_violations(rule: FeatureRule, data: npt.NDArray[Any]) -> list[_Broken]:
    flat = data.reshape(-1) if rule.column is None else data[:, rule.column]
    if rule.categories is not None:
        allowed = rule.categories
        bad = [i for i, v in enumerate(flat) if _category(v) not in allowed]
        if not bad:
            return []
        return [_Broken(rule, "category", len(bad), _at(rule, bad[0]), _category(flat[bad[0]]))]
    vectors = _vectors(
        [
            FeatureRule(
                rule.name, rule.input, 0, rule.low, rule.high, rule.allow_null, rule.allow_infinite
            )
        ]
    )
    found = _numeric_violations(flat.reshape(-1, 1), vectors)
    return [_Broken(rule, b.rule, b.count, _at(rule, b.where[0]), b.value) for b in found]


def _at(rule: FeatureRule, row: int) -> tuple[int, ...]:
    return (row,) if rule.column is None else (row, rule.column)


def _category(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    return str(value)


def _layout(
    signature: ModelMetadata, columns: list[str], features: Sequence[str] | None, source: str
) -> list[tuple[str, str, int | None]]:
    """(feature, input, column) for each feature the rules check."""
    inputs = signature.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        spec = inputs[0]
        names = list(features) if features is not None else columns
        width = spec.shape[1]
        if width >= 0 and len(names) != width:
            hint = "" if features is not None else "; set `features` to the input's columns"
            raise ConfigError(
                f"{source}: input {spec.name!r} takes {width} columns, the features are "
                f"{len(names)} ({', '.join(names)}){hint}"
            )
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise ConfigError(f"{source}: features not in the profile: {', '.join(unknown)}")
        return [(name, spec.name, j) for j, name in enumerate(names)]
    wanted = set(features) if features is not None else {s.name for s in inputs}
    layout: list[tuple[str, str, int | None]] = [
        (s.name, s.name, None) for s in inputs if s.name in wanted and s.name in columns
    ]
    if not layout:
        raise ConfigError(
            f"{source}: no input of the model ({', '.join(s.name for s in inputs)}) is a "
            f"column of the profile ({', '.join(columns)})"
        )
    return layout


def _rule(
    name: str,
    input_name: str,
    column: int | None,
    stats: Mapping[str, Any],
    margin: float,
    source: str,
) -> FeatureRule:
    dtype = stats.get("dtype")
    allow_null = bool(stats.get("null_count", 0))
    if dtype in _CATEGORICAL:
        closed = not stats.get("other_count", 0) and isinstance(stats.get("top"), list)
        categories = frozenset(_category(v) for v, _ in stats["top"]) if closed else None
        return FeatureRule(
            name, input_name, column, allow_null=allow_null, categories=categories, categorical=True
        )
    if dtype not in ("int", "float"):
        raise ConfigError(f"{source}: feature {name!r} is {dtype}, not checkable in a tensor")
    low, high = stats.get("min"), stats.get("max")
    if low is not None and high is not None:
        spread = (high - low) * margin
        low, high = low - spread, high + spread
    allow_inf = bool(stats.get("infinite_count", 0))
    return FeatureRule(name, input_name, column, low, high, allow_null, allow_inf)


_REASONS = {
    "below_min": "is below the training minimum {low:g}",
    "above_max": "is above the training maximum {high:g}",
    "null": "is null (NaN); training had no nulls",
    "infinite": "is infinite; training had no infinite values",
    "category": "is not a category seen in training",
}


class ProfileCheckPolicy:
    """Checks requests against the served version's training profile (see the module doc)."""

    name = "profile"

    def __init__(
        self,
        rules: Callable[[], tuple[str, ProfileRules] | None],
        options: ProfileCheckOptions | None = None,
        *,
        clock: Clock | None = None,
        on_event: EventSink = discard,
        target: str = "",
    ) -> None:
        """`rules()`: the served version and its rules (None: nothing to check against)."""
        self._rules = rules
        self.options = options or ProfileCheckOptions()
        self._clock = clock or SystemClock()
        self._on_event = on_event
        self._target = target
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    async def __call__(
        self,
        request: InferenceRequest,
        ctx: CallContext,
        call_next: Handler[InferenceRequest, InferenceResponse],
    ) -> InferenceResponse:
        current = self._rules()
        if current is not None:
            version, rules = current
            broken = rules.violations(request)
            if broken:
                self._report(version, rules, request, broken)
        return await call_next(request, ctx)

    def _report(
        self, version: str, rules: ProfileRules, request: InferenceRequest, broken: list[_Broken]
    ) -> None:
        reject = self.options.mode == "reject"
        action = "rejected" if reject else "flagged"
        for b in broken:
            self._on_event(
                InputOutOfProfile(self._target, version, b.feature.name, b.rule, action, b.count)
            )
        first = broken[0]
        index = next(i for i, t in enumerate(request.inputs) if t.name == first.feature.input)
        place = f"inputs[{index}].data" + "".join(f"[{i}]" for i in first.where)
        reason = _REASONS[first.rule].format(low=first.feature.low, high=first.feature.high)
        message = f"feature {first.feature.name!r} = {first.value!r} {reason} ({rules.source})"
        if reject:
            raise InvalidInputError(place, message)
        for b in broken:
            self._log(version, b, rules)

    def _log(self, version: str, broken: _Broken, rules: ProfileRules) -> None:
        key = (broken.feature.name, broken.rule)
        now = self._clock.monotonic()
        last, suppressed = self._logged.get(key, (-math.inf, 0))
        if now - last < self.options.log_interval_s:
            self._logged[key] = (last, suppressed + broken.count)
            return
        self._logged[key] = (now, 0)
        reason = _REASONS[broken.rule].format(low=broken.feature.low, high=broken.feature.high)
        logger.warning(
            "input out of profile",
            extra={
                "target": self._target,
                "version": version,
                "feature": broken.feature.name,
                "rule": broken.rule,
                "value": broken.value,
                "reason": f"{reason} ({rules.source})",
                "count": broken.count,
                "suppressed": suppressed,
            },
        )
