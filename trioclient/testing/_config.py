"""Configuration values for the embedded server: latency distributions, faults, limits.

Everything here is a frozen attrs value. A running server holds one `ServerConfig`
and swaps it whole (`Server.set_config`) rather than mutating fields, so a request
always sees one consistent configuration from start to end.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

__all__ = [
    "FAULT_KINDS",
    "Distribution",
    "FaultParams",
    "ServerConfig",
    "parse_distribution",
]

#: Every fault the server knows how to inject, in the order the docs list them.
#: Stream-only faults have a nearest equivalent on a non-streaming response (see
#: `trioclient.testing` docs): for example `reset_mid_stream` resets mid-body.
FAULT_KINDS: tuple[str, ...] = (
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "html_error",
    "rate_limited",
    "reset_before_response",
    "reset_mid_body",
    "reset_mid_stream",
    "truncated_stream",
    "malformed_json",
    "malformed_chunk",
    "error_event",
    "stall_before_first_byte",
    "stall_between_chunks",
    "slow_trickle",
    "huge_response",
    "wrong_content_type",
    "handler_crash",
)

_FAULT_SET = frozenset(FAULT_KINDS)


def check_fault_name(name: str) -> str:
    """Return `name` if it is a known fault kind, else raise a ValueError listing them."""
    if name not in _FAULT_SET:
        raise ValueError(f"unknown fault kind {name!r}; known kinds: {', '.join(FAULT_KINDS)}")
    return name


@attrs.frozen
class Distribution:
    """A random duration or rate: a fixed value, uniform(a, b) or lognormal(median, sigma).

    Latency in real APIs is skewed: most requests are quick, a few are very slow.
    `lognormal` models that with two readable numbers, the median and the spread
    `sigma` (0.5 means roughly a third of samples fall outside [median/1.65,
    median*1.65]). `uniform` is for tests that want bounded jitter, `fixed` for tests
    that want none.

    >>> Distribution.fixed(0.2).sample(random.Random(0))
    0.2
    """

    kind: Literal["fixed", "uniform", "lognormal"]
    a: float
    b: float = 0.0

    def __attrs_post_init__(self) -> None:
        for value in (self.a, self.b):
            if not math.isfinite(value) and not (self.kind == "fixed" and value == math.inf):
                raise ValueError(f"{self.kind} distribution parameters must be finite")
            if value < 0:
                raise ValueError(f"{self.kind} distribution parameters must be >= 0, got {value}")
        if self.kind == "uniform" and self.b < self.a:
            raise ValueError(f"uniform distribution needs a <= b, got {self.a}, {self.b}")

    @classmethod
    def fixed(cls, value: float) -> Distribution:
        """Always `value`."""
        return cls("fixed", float(value))

    @classmethod
    def uniform(cls, low: float, high: float) -> Distribution:
        """Uniform on [low, high]."""
        return cls("uniform", float(low), float(high))

    @classmethod
    def lognormal(cls, median: float, sigma: float) -> Distribution:
        """Lognormal with the given median and log-space standard deviation."""
        if median <= 0:
            raise ValueError(f"lognormal median must be > 0, got {median}")
        return cls("lognormal", float(median), float(sigma))

    def sample(self, rng: random.Random) -> float:
        """Draw one value using `rng` (so a seeded server is reproducible)."""
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        return rng.lognormvariate(math.log(self.a), self.b)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.a:g}"
        return f"{self.kind}:{self.a:g},{self.b:g}"


def parse_distribution(text: str) -> Distribution:
    """Parse `"0.2"`, `"fixed:0.2"`, `"uniform:0.1,0.3"` or `"lognormal:0.2,0.5"`.

    Raises:
        ValueError: naming what is wrong with `text`.
    """
    kind, sep, rest = text.strip().partition(":")
    if not sep:
        kind, rest = "fixed", kind
    try:
        numbers = [float(part) for part in rest.split(",")]
    except ValueError:
        raise ValueError(f"bad distribution {text!r}: parameters must be numbers") from None
    expected = {"fixed": 1, "uniform": 2, "lognormal": 2}.get(kind)
    if expected is None:
        raise ValueError(
            f"bad distribution {text!r}: kind must be fixed, uniform or lognormal, not {kind!r}"
        )
    if len(numbers) != expected:
        raise ValueError(f"bad distribution {text!r}: {kind} takes {expected} parameter(s)")
    if kind == "fixed":
        return Distribution.fixed(numbers[0])
    if kind == "uniform":
        return Distribution.uniform(numbers[0], numbers[1])
    return Distribution.lognormal(numbers[0], numbers[1])


def to_distribution(value: Distribution | str | float) -> Distribution:
    """attrs converter: accept a Distribution, a number (fixed) or a string to parse."""
    if isinstance(value, Distribution):
        return value
    if isinstance(value, str):
        return parse_distribution(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a Distribution, number or string, got {value!r}")
    return Distribution.fixed(value)


def _to_optional_distribution(value: Distribution | str | float | None) -> Distribution | None:
    return None if value is None else to_distribution(value)


def _to_fault_table(
    value: Mapping[str, float] | Iterable[tuple[str, float]],
) -> tuple[tuple[str, float], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    table = []
    for name, probability in items:
        check_fault_name(name)
        probability = float(probability)
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"fault {name!r}: probability must be in [0, 1], got {probability}")
        if probability > 0:
            table.append((name, probability))
    return tuple(sorted(table))


def _positive(instance: Any, attribute: Any, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


def _non_negative(instance: Any, attribute: Any, value: Any) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


@attrs.frozen(kw_only=True)
class FaultParams:
    """Knobs for the faults: how long a stall lasts, how slow a trickle is, and so on.

    Attributes:
        stall_seconds: how long `stall_before_first_byte` / `stall_between_chunks` sleep.
        chunks_before_fault: how many stream steps (or, non-streaming, what share of the
            body in sixteenths) go out before a mid-body fault strikes.
        trickle_bytes: bytes per write for `slow_trickle`.
        trickle_interval: seconds between those writes.
        huge_bytes: the answer size for `huge_response`.
        rate_limited_retry_after: seconds the `rate_limited` fault asks the client to wait.
    """

    stall_seconds: float = attrs.field(default=2.0, validator=_non_negative)
    chunks_before_fault: int = attrs.field(default=3, validator=_non_negative)
    trickle_bytes: int = attrs.field(default=16, validator=_positive)
    trickle_interval: float = attrs.field(default=0.005, validator=_non_negative)
    huge_bytes: int = attrs.field(default=8 * 1024 * 1024, validator=_positive)
    rate_limited_retry_after: float = attrs.field(default=0.2, validator=_non_negative)


@attrs.frozen(kw_only=True)
class ServerConfig:
    """Everything a server simulates. Build one directly or pass the same names to
    `open_server(**config)`.

    Attributes:
        host: address to bind; loopback by default.
        port: 0 picks a free ephemeral port.
        api_key: the one accepted bearer key, or None to accept any key (a request with
            no Authorization header is still 401, as with the real API).
        models: ids listed by `GET /v1/models`. Chat requests may name any model: it is
            echoed back.
        ttft: time to first token (seconds).
        tps: tokens per second after the first, or None to send every token at once.
        answer_tokens: tokens in each answer; None picks 20-40 from the prompt's hash.
        seed: seeds the server's own randomness (latency samples, fault dice).
        rpm, tpm: requests / tokens per minute allowed per API key, or None.
        insufficient_quota: answer every chat request with a 429 insufficient_quota.
        faults: fault kind -> probability per chat request.
        fault_params: the knobs for those faults.
        max_body_bytes: larger request bodies get a 413.
        keepalive_timeout: an idle keep-alive connection is closed after this long.
        system_fingerprint: echoed in every completion.
        batch_delay: seconds (trio clock) from creating a batch (`POST /v1/batches`)
            until it is complete.
        dialect: whose quirks the answers reproduce: "openai" (the reference), "xai",
            "openrouter", "gemini", "vllm", "llamacpp", "ollama", "mistral" or "nim"
            (see `trioclient.testing._dialects`); a request may pick another with the
            `x-trioclient-sim` header's "dialect".
    """

    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = attrs.field(default=None, repr=False)
    models: tuple[str, ...] = attrs.field(default=("trioclient-sim",), converter=tuple)
    ttft: Distribution = attrs.field(default=Distribution.fixed(0.0), converter=to_distribution)
    tps: Distribution | None = attrs.field(default=None, converter=_to_optional_distribution)
    answer_tokens: int | None = attrs.field(default=None, validator=_positive)
    seed: int | None = None
    rpm: int | None = attrs.field(default=None, validator=_positive)
    tpm: int | None = attrs.field(default=None, validator=_positive)
    insufficient_quota: bool = False
    faults: tuple[tuple[str, float], ...] = attrs.field(default=(), converter=_to_fault_table)
    fault_params: FaultParams = FaultParams()
    max_body_bytes: int = attrs.field(default=16 * 1024 * 1024, validator=_positive)
    keepalive_timeout: float | None = attrs.field(default=75.0, validator=_positive)
    system_fingerprint: str = "fp_trioclient"
    batch_delay: float = attrs.field(default=1.0, validator=_non_negative)
    dialect: str = attrs.field(default="openai")

    @dialect.validator
    def _check_dialect(self, _: object, value: str) -> None:
        from ._dialects import check_dialect

        check_dialect(value)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be a non-empty string or None")
        total = sum(probability for _, probability in self.faults)
        if total > 1.0 + 1e-9:
            # One die roll picks at most one fault per request, so the shares must fit in 1.
            raise ValueError(f"fault probabilities add up to {total:g}, more than 1")
