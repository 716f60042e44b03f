"""A rate budget shared by many processes and machines, kept in Redis.

Each trioclient paces itself well alone (:mod:`trioclient._pacing`); several of them on
one API key overshoot it together. :class:`RedisBudget` keeps the key's requests and
tokens budgets in one Redis hash that every worker updates atomically.

The algorithm is GCRA, the "generic cell rate algorithm": a budget of ``rate`` units a
second with a burst of ``burst`` units is one number, the *theoretical arrival time*
(TAT), the moment the budget would be back to full had nobody sent more. Sending
``cost`` units moves it::

    tat  = max(tat, now) + cost * interval       interval = 1 / rate
    send at  tat - tolerance                     tolerance = burst * interval

so no window of any length ``w`` admits more than ``burst + rate * w`` units. Here a
caller does not poll: its script call *reserves* its place and answers how long to wait
(zero while the burst lasts), so waiting workers are served in the order they asked,
with one round trip per request. The script reads the time from the Redis server
(``TIME``), so the machines' clocks may disagree.

Tokens are charged by estimate when a request is sent, and corrected (a refund or an
extra charge) when the answer's ``usage`` says what it cost; a 429 gives the tokens
back (a refused request used none). When the provider's ``x-ratelimit-remaining-*``
headers say less is left than the shared state allows, the state is pulled down to
match, for every worker. Corrections and pull-downs travel with the worker's next
request (no extra round trip), and when its client closes.

What a charge means when its worker dies mid-request: it stays. The budget cannot
know whether the request reached the provider (which counts it if it did), so the
charge ages out with time, as the provider's own does.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import httpx
import trio

from ._pacing import estimate_tokens
from ._redis import RedisError, RedisPool, RedisURL
from ._resp import RespError

if TYPE_CHECKING:
    from ._models import Usage
    from ._pacer import Pacer
    from ._pacing import Budgets

__all__ = ["RedisBudget", "SharedBudgetError", "SharedBudgetStatistics"]


class SharedBudgetError(Exception):
    """The shared budget could not be used (Redis unreachable, too slow, or refusing us),
    and the budget's policy is ``on_unreachable="error"``. Its ``__cause__`` says why."""


#: The whole algorithm, run atomically by Redis. Times are microseconds of the Redis
#: server's clock; ARGV for each budget ("r" requests, "t" tokens) are: interval
#: (µs per unit; 0 = no such budget), tolerance (µs), units to take now, units to
#: adjust by (a correction: negative refunds), a floor flag and the floor (the offset
#: in µs from now of the TAT the provider's headers imply: the TAT is raised to it).
#: ARGV[13], when not 0, stands in for the server's clock: the tests' way to check the
#: arithmetic exactly; the budget itself always sends 0.
GCRA_SCRIPT = b"""
local now = tonumber(ARGV[13])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local wait = 0
local horizon = now
for i, field in ipairs({'r', 't'}) do
  local base = (i - 1) * 6
  local interval = tonumber(ARGV[base + 1])
  if interval > 0 then
    local tolerance = tonumber(ARGV[base + 2])
    local take = tonumber(ARGV[base + 3])
    local adjust = tonumber(ARGV[base + 4])
    local has_floor = tonumber(ARGV[base + 5])
    local floor = tonumber(ARGV[base + 6])
    local tat = tonumber(redis.call('HGET', KEYS[1], field)) or now
    if has_floor > 0 and now + floor > tat then
      tat = now + floor
    end
    tat = tat + adjust * interval
    if take > 0 then
      if tat < now then tat = now end
      tat = tat + take * interval
      local w = tat - tolerance - now
      if w > wait then wait = w end
    end
    redis.call('HSET', KEYS[1], field, string.format('%.0f', tat))
    if tat > horizon then horizon = tat end
  end
end
redis.call('PEXPIRE', KEYS[1], math.floor((horizon - now) / 1000) + 1000)
return math.floor(wait)
"""

GCRA_SHA = hashlib.sha1(GCRA_SCRIPT).hexdigest()


@attrs.frozen
class SharedBudgetStatistics:
    """A snapshot of one process's use of a :class:`RedisBudget`.

    Attributes:
        round_trips: Commands sent to Redis (each one network round trip).
        reservations: Attempts that reserved their place in the shared budget.
        waited: Total seconds attempts slept for their place.
        script_loads: Times the script had to be sent whole (``NOSCRIPT``: a new or
            restarted server, or a ``SCRIPT FLUSH``).
        connections_opened: Connections opened to Redis (the first, then after losses).
        local_fallbacks: Times Redis was unreachable and the budget paced locally.
    """

    round_trips: int
    reservations: int
    waited: float
    script_loads: int
    connections_opened: int
    local_fallbacks: int


def _positive_or_none(name: str) -> Any:
    def check(_instance: object, _attribute: object, value: object) -> None:
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"{name} must be a positive number or None, got {value!r}")

    return check


#: The four numbers of one budget that change from call to call: units to take,
#: units to adjust by, a floor flag and the floor's offset (µs).
Change = tuple[int, int, int, int]
_NO_CHANGE: Change = (0, 0, 0, 0)


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


_SMALL_INTS = [_bulk(b"%d" % i) for i in range(-1024, 1024)]
_TAKE_ONE: Change = (1, 0, 0, 0)
_TAKE_ONE_BYTES = b"".join(_SMALL_INTS[v + 1024] for v in _TAKE_ONE)


def _bulk_ints(values: Change) -> bytes:
    # Most numbers sent are small (1 request, a few hundred tokens, 0 for "none"):
    # their encodings are made once, and so is the commonest change of all.
    if values == _TAKE_ONE:
        return _TAKE_ONE_BYTES
    small = _SMALL_INTS
    return b"".join([small[v + 1024] if -1024 <= v < 1024 else _bulk(b"%d" % v) for v in values])


@attrs.define(eq=False, repr=False)
class _Dimension:
    """One budget (requests or tokens) as this process sees it."""

    interval_us: float  # µs of budget per unit
    tolerance_us: float  # µs: the burst
    burst: float  # units
    adjust: int = 0  # corrections not yet sent
    floor_at: float = -math.inf  # trio time the provider's headers say the TAT is at least
    constants: bytes = b""  # interval and tolerance, encoded once

    def __attrs_post_init__(self) -> None:
        self.constants = _bulk(repr(self.interval_us).encode()) + _bulk(
            repr(self.tolerance_us).encode()
        )

    def change(self, take: int, now: float) -> Change:
        """What to send with the next call (the pending corrections go with it)."""
        floor = self.floor_at
        adjust = self.adjust
        self.adjust = 0
        if floor == -math.inf:
            return (take, adjust, 0, 0)
        self.floor_at = -math.inf
        return (take, adjust, 1, round((floor - now) * 1e6))

    def restore(self, sent: Change, now: float) -> None:
        """Put back the corrections of a call that failed, to go with the next one."""
        self.adjust += sent[1]
        if sent[2]:
            self.floor_at = max(self.floor_at, now + sent[3] / 1e6)

    def observe_remaining(self, remaining: float, now: float) -> None:
        """The provider says ``remaining`` units are left (fewer than a burst): the TAT is
        at least this far ahead."""
        at = now + (self.tolerance_us - remaining * self.interval_us) / 1e6
        self.floor_at = max(self.floor_at, at)


_ABSENT = _bulk(b"0") * 2  # a budget not configured: interval 0


@attrs.define(eq=False, repr=False)
class RedisBudget:
    """A requests and tokens budget shared through Redis by every process that names
    the same ``key``.

    ::

        budget = trioclient.RedisBudget("redis://localhost:6379/0", key="xai-prod",
                                        rpm=1200, tpm=2_000_000)
        async with trioclient.Client(budget=budget) as client:
            ...  # every attempt of every process on "xai-prod" waits its turn

    Give each process its own ``RedisBudget`` (the client closes it when it closes);
    all of them with the same ``key`` share one budget, so give them the same ``rpm``
    and ``tpm`` too. The budget starts with ``burst_seconds`` worth of each (one second:
    ``rpm=1200`` lets 20 requests go at once, then 20 a second).

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``. The password is never shown.
        key: The Redis key holding the budget (one small hash, expiring when idle).
        rpm: Requests per minute, or ``None``.
        tpm: Tokens per minute (estimated when sent, corrected by ``usage``), or ``None``.
        burst_seconds: How many seconds' worth of budget an idle budget lets go at once.
        on_unreachable: ``"error"`` (default): an attempt that cannot reach Redis
            raises :class:`SharedBudgetError`. ``"local"``: the process warns
            (:class:`RuntimeWarning`) and paces alone at ``local_share`` of the budget,
            asking Redis again every ``retry_interval`` seconds.
        local_share: The fraction of ``rpm``/``tpm`` a process paces at alone (with N
            workers, ``1/N`` keeps their sum within the budget).
        retry_interval: Seconds between tries of an unreachable Redis.
        timeout: Seconds Redis has to answer each command (and to connect).
    """

    url: str = attrs.field(converter=str)
    key: str = attrs.field(kw_only=True)
    rpm: float | None = attrs.field(default=None, kw_only=True, validator=_positive_or_none("rpm"))
    tpm: float | None = attrs.field(default=None, kw_only=True, validator=_positive_or_none("tpm"))
    burst_seconds: float = attrs.field(default=1.0, kw_only=True)
    on_unreachable: Literal["error", "local"] = attrs.field(default="error", kw_only=True)
    local_share: float = attrs.field(default=1.0, kw_only=True)
    retry_interval: float = attrs.field(default=5.0, kw_only=True)
    timeout: float = attrs.field(default=2.0, kw_only=True)
    _location: RedisURL = attrs.field(init=False)
    _pool: RedisPool = attrs.field(init=False)
    _requests: _Dimension | None = attrs.field(init=False, default=None)
    _tokens: _Dimension | None = attrs.field(init=False, default=None)
    _local: Budgets | None = attrs.field(init=False, default=None)
    _local_until: float = attrs.field(init=False, default=-math.inf)
    _reservations: int = attrs.field(init=False, default=0)
    _waited: float = attrs.field(init=False, default=0.0)
    _script_loads: int = attrs.field(init=False, default=0)
    _fallbacks: int = attrs.field(init=False, default=0)
    _fake_now_us: int = attrs.field(init=False, default=0)  # tests only: see GCRA_SCRIPT
    _evalsha_head: bytes = attrs.field(init=False, default=b"")
    _eval_head: bytes = attrs.field(init=False, default=b"")

    def __attrs_post_init__(self) -> None:
        self._location = RedisURL.parse(self.url)
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"key must be a non-empty string, got {self.key!r}")
        if self.rpm is None and self.tpm is None:
            raise ValueError("a RedisBudget needs rpm, tpm or both")
        for name in ("burst_seconds", "retry_interval", "timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.on_unreachable not in ("error", "local"):
            raise ValueError(
                f"on_unreachable must be 'error' or 'local', got {self.on_unreachable!r}"
            )
        if not isinstance(self.local_share, int | float) or not 0 < self.local_share <= 1:
            raise ValueError(f"local_share must be in (0, 1], got {self.local_share!r}")
        self._pool = RedisPool(self._location, timeout=self.timeout)
        self._requests = self._dimension(self.rpm)
        self._tokens = self._dimension(self.tpm)
        # Every call's command starts the same way: encoded once (the per-call encoding
        # was a third of the client's cost of a reservation).
        key = _bulk(self.key.encode())
        self._evalsha_head = (
            b"*17\r\n" + _bulk(b"EVALSHA") + _bulk(GCRA_SHA.encode()) + _bulk(b"1") + key
        )
        self._eval_head = b"*17\r\n" + _bulk(b"EVAL") + _bulk(GCRA_SCRIPT) + _bulk(b"1") + key

    def _dimension(self, per_minute: float | None) -> _Dimension | None:
        if per_minute is None:
            return None
        per_second = per_minute / 60.0
        interval = 1e6 / per_second
        burst = max(1.0, per_second * self.burst_seconds)
        return _Dimension(interval, burst * interval, burst)

    def __repr__(self) -> str:
        return (
            f"RedisBudget({self._location.redacted!r}, key={self.key!r}, "
            f"rpm={self.rpm!r}, tpm={self.tpm!r})"
        )

    # -- the request path ------------------------------------------------------------

    def pacer(self, body: Mapping[str, Any], inner: Pacer | None = None) -> Pacer:
        """The pacer of one request: the shared budget first, then ``inner`` (a batch's
        own pacing), if any."""
        tokens = estimate_tokens(body) if self._tokens is not None else 0
        return _SharedPacer(self, tokens, inner)

    async def acquire(self, tokens: int) -> None:
        """Reserve one request and ``tokens`` tokens; sleep until they may be spent.

        Cancelled while sleeping, the reservation is given back (with the next call).

        Raises:
            SharedBudgetError: Redis is unreachable and ``on_unreachable="error"``.
        """
        now = trio.current_time()
        if self._local_until > now:
            await self._acquire_locally(tokens)
            return
        requests = self._requests
        tokens_dim = self._tokens
        change_r = _NO_CHANGE if requests is None else requests.change(1, now)
        change_t = _NO_CHANGE if tokens_dim is None else tokens_dim.change(tokens, now)
        try:
            wait_us = await self._run_script(change_r, change_t)
        except RedisError as exc:
            if requests is not None:
                requests.restore(change_r, now)
            if tokens_dim is not None:
                tokens_dim.restore(change_t, now)
            if self.on_unreachable == "error":
                raise SharedBudgetError(
                    f"the shared budget {self.key!r} at {self._location.redacted} is "
                    f"unavailable: {exc}"
                ) from exc
            self._fall_back(exc)
            await self._acquire_locally(tokens)
            return
        self._reservations += 1
        if wait_us > 0:
            wait = wait_us / 1e6
            self._waited += wait
            try:
                await trio.sleep(wait)
            except BaseException:
                self.correct(requests=-1, tokens=-tokens)
                raise

    async def ping(self) -> None:
        """Check that Redis answers (and accepts the URL's login), before any work.

        Raises:
            SharedBudgetError: it does not.
        """
        try:
            reply = await self._pool.execute("PING")
            if isinstance(reply, RespError):
                raise RedisError(f"PING refused by {self._location.redacted}: {reply.message}")
        except RedisError as exc:
            raise SharedBudgetError(
                f"the shared budget {self.key!r} at {self._location.redacted} is unavailable: {exc}"
            ) from exc

    async def _run_script(self, change_r: Change, change_t: Change) -> int:
        """One atomic call: corrections, then reservations; returns the wait in µs."""
        requests, tokens_dim = self._requests, self._tokens
        args = b"".join(
            (
                _ABSENT if requests is None else requests.constants,
                _bulk_ints(change_r),
                _ABSENT if tokens_dim is None else tokens_dim.constants,
                _bulk_ints(change_t),
                _bulk(b"%d" % self._fake_now_us),
            )
        )
        pool = self._pool
        reply = await pool.execute_encoded(self._evalsha_head + args)
        if isinstance(reply, RespError) and reply.code == "NOSCRIPT":
            # A new or restarted server, or SCRIPT FLUSH: send it whole (EVAL caches it).
            self._script_loads += 1
            reply = await pool.execute_encoded(self._eval_head + args)
        if isinstance(reply, RespError):
            raise RedisError(
                f"the budget script failed on {self._location.redacted}: {reply.message}"
            )
        if not isinstance(reply, int):
            raise RedisError(f"the budget script answered {reply!r}, not a number")
        return reply

    def _fall_back(self, exc: RedisError) -> None:
        from ._pacing import Budgets

        self._fallbacks += 1
        self._local_until = trio.current_time() + self.retry_interval
        if self._local is None:
            share = self.local_share
            self._local = Budgets(
                rpm=None if self.rpm is None else self.rpm * share,
                tpm=None if self.tpm is None else self.tpm * share,
                follow_headers=False,
            )
        warnings.warn(
            f"the shared budget {self.key!r} is unavailable ({exc}); pacing this process "
            f"alone at {self.local_share:g} of it, and asking Redis again in "
            f"{self.retry_interval:g} s",
            RuntimeWarning,
            stacklevel=3,
        )

    async def _acquire_locally(self, tokens: int) -> None:
        assert self._local is not None
        await self._local.acquire(tokens)

    def correct(self, *, requests: int = 0, tokens: int = 0) -> None:
        """Charge (positive) or refund (negative) the shared budget; sent with the next
        reservation, or when the budget closes."""
        if self._requests is not None:
            self._requests.adjust += requests
        if self._tokens is not None:
            self._tokens.adjust += tokens
        if tokens and self._local is not None:
            self._local.refund_tokens(-tokens)

    def observe(self, headers: httpx.Headers) -> None:
        """Read the provider's ``x-ratelimit-remaining-*``: where they say less is left
        than the shared state allows, the state is pulled down (with the next call)."""
        for dimension, name in (
            (self._requests, "x-ratelimit-remaining-requests"),
            (self._tokens, "x-ratelimit-remaining-tokens"),
        ):
            if dimension is None:
                continue
            text = headers.get(name)
            if text is None:
                continue
            try:
                remaining = float(text)
            except ValueError:
                continue
            # (NaN fails both comparisons; a reading of a full burst or more says nothing new.)
            if 0 <= remaining < dimension.burst:
                dimension.observe_remaining(remaining, trio.current_time())

    async def flush(self) -> None:
        """Send the corrections not yet sent (a call that reserves nothing)."""
        requests, tokens_dim = self._requests, self._tokens
        pending = any(
            d is not None and (d.adjust or d.floor_at > -math.inf) for d in (requests, tokens_dim)
        )
        if not pending or self._local_until > trio.current_time():
            return
        now = trio.current_time()
        change_r = _NO_CHANGE if requests is None else requests.change(0, now)
        change_t = _NO_CHANGE if tokens_dim is None else tokens_dim.change(0, now)
        try:
            await self._run_script(change_r, change_t)
        except RedisError:
            if requests is not None:
                requests.restore(change_r, now)
            if tokens_dim is not None:
                tokens_dim.restore(change_t, now)
            raise

    async def aclose(self) -> None:
        """Send the pending corrections (briefly, even when cancelled), then close the
        connections. A Redis gone by then loses only those corrections."""
        with trio.CancelScope(shield=True), trio.move_on_after(self.timeout):
            try:
                await self.flush()
            except RedisError:
                pass
        await self._pool.aclose()

    def statistics(self) -> SharedBudgetStatistics:
        """A snapshot of this process's use of the budget."""
        return SharedBudgetStatistics(
            round_trips=self._pool.round_trips,
            reservations=self._reservations,
            waited=self._waited,
            script_loads=self._script_loads,
            connections_opened=self._pool.connections_opened,
            local_fallbacks=self._fallbacks,
        )


class _SharedPacer:
    """One request's side of a :class:`RedisBudget` (and of an inner pacer, if any)."""

    __slots__ = ("budget", "charged", "inner", "tokens")

    def __init__(self, budget: RedisBudget, tokens: int, inner: Pacer | None) -> None:
        self.budget = budget
        self.tokens = tokens
        self.inner = inner
        self.charged = False  # this attempt's cost is reserved in Redis, not yet sent

    async def before_attempt(self, request: httpx.Request) -> None:
        if not self.charged:  # (awaited again when the inner pacer's budget ran dry)
            await self.budget.acquire(self.tokens)
            self.charged = True
        if self.inner is not None:
            await self.inner.before_attempt(request)

    def still_clear(self, request: httpx.Request) -> bool:
        still_clear = getattr(self.inner, "still_clear", None)
        if still_clear is not None and not still_clear(request):
            return False  # waits for the inner pacer again; Redis is not charged twice
        self.charged = False
        return True

    def after_attempt(self, request: httpx.Request) -> None:
        after_attempt = getattr(self.inner, "after_attempt", None)
        if after_attempt is not None:
            after_attempt(request)

    def abandon(self, request: httpx.Request) -> None:
        abandon = getattr(self.inner, "abandon", None)
        if abandon is not None:
            abandon(request)
        if self.charged:
            # The attempt never went: the shared budget gets its reservation back.
            self.charged = False
            self.budget.correct(requests=-1, tokens=-self.tokens)

    def after_response(self, response: httpx.Response) -> None:
        budget = self.budget
        budget.observe(response.headers)
        if response.status_code == 429 and self.tokens:
            # A refused request used none of its tokens. (Its request stays charged:
            # the provider counted the attempt.)
            budget.correct(tokens=-self.tokens)
        if self.inner is not None:
            self.inner.after_response(response)

    def after_usage(self, usage: Usage | None) -> None:
        """The answer's true cost is known: correct the estimate charged for it."""
        if usage is not None and self.tokens:
            self.budget.correct(tokens=usage.total_tokens - self.tokens)
        after_usage = getattr(self.inner, "after_usage", None)
        if after_usage is not None:
            after_usage(usage)
