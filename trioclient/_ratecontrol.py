"""The rate controller: tell a budget from noise by experiment, then pace to the budget.

A server answers 429 for two kinds of reason, and they call for opposite answers:

* **a budget** (a token bucket per key, requests or tokens per minute): the 429s are
  caused by the rate the client sends at, and slowing down is the only cure;
* **noise** (overload answered at random, another program spending the same key): the
  429s come at a share that does not depend on this client's rate, and slowing down
  only throws throughput away. Each refused request waits its own ``Retry-After``;
  the client as a whole carries on.

No single answer says which it is. A ``Retry-After`` of one second fits both; so does
a run of refusals right after a run of successes (a bucket that was full, then ran dry,
looks like that). What tells them apart is how the refusals respond to the rate, and
that can be measured: **slow down, and look**. A budget's 429s fall away (or at least
the accepted rate holds while the sending rate drops: the bucket was the limit); noise
keeps its share of refusals and the accepted rate falls with the sending rate.

The controller has two states.

* **Unpaced**, random 429s are let be, up to about half of all attempts: each refused
  request waits its own ``Retry-After`` and the client carries on. What starts pacing
  is a budget that **ran dry**: a run of ten refusals since the last attempt that got
  through, or 15 of the latest 16 refused (a bucket that was full and is now empty
  refuses every attempt but the one that meets a new token; random refusals, even
  40 % of them, do either about once in 10,000 attempts). Then one client-wide pause,
  until the time the server named, and a pace of one attempt per server wait: a dry
  bucket's wait is the time to its next token. Short of dry, more than half refused,
  by two standard deviations beyond chance and beyond the learned noise (Google SRE's
  client-side throttling starts where requests outnumber twice the accepts), is a
  cut to the rate the server accepted, without a pause: an experiment (below).
  Attempts are ordered by a counter the gate keeps (timestamps tie).
* **Paced**, it is additive-increase/multiplicative-decrease on the sending rate, as in
  congestion control, in **epochs** of a dozen answers (or four, two seconds old).
  An epoch without more 429s than the learned noise explains speeds up a little (the
  step doubling with each such epoch in a row, then a quarter per epoch after three:
  a client cut low while another took the key climbs back once the other is done);
  one with a 429 or so beyond the noise holds the pace. An epoch with significantly more cuts the pace to the rate the server accepted
  during it (by a fifth at least, by half at most: two clients on one key settle on
  sharing it), with one more pause. Every cut is an **experiment**: should the next
  epoch keep the same share of 429s while accepting fewer requests in proportion,
  slowing down did not help, the 429s were noise, and the cuts are undone.

Two rules keep the verdicts honest. A 429 comes back faster than a completion, so the
attempts sent in the last two answer-times are judged later, once their successes have
had time to come back (otherwise a burst of instant 429s reads as a dry budget). And an
answer to an attempt sent before the pace last changed says nothing about the new pace
(as a TCP sender ignores the losses of its window before a cut): it is ignored.

The controller is a plain value fed samples stamped with trio's clock
(:meth:`RateController.on_answer`, :meth:`RateController.poll`); it does no I/O and
never sleeps. The gate (:mod:`trioclient._gate`) does the waiting it asks for.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["RateController", "RateControlState"]

#: Answers in an epoch before a clean verdict...
EPOCH_ANSWERS = 12
#: ...or this many, once the epoch is this old (seconds): a slow pace still gets to
#: speed up every few seconds.
EPOCH_MIN_ANSWERS = 4
EPOCH_SECONDS = 2.0
#: An epoch after a cut needs this many answers before it can call the 429s noise.
TRIAL_ANSWERS = 12
#: Already paced: each "too fast" verdict multiplies the pace by this at least...
CUT = 0.8
#: ...and at most by this (less when the server accepted less than that).
MAX_CUT = 0.5
#: A budget ran dry when this many attempts in a row were refused. A bucket run dry
#: refuses every attempt; refusals at random, 40 % of them, make such a run about
#: once in 10,000 attempts.
DRY_RUN = 10
#: Unpaced, the share of 429s is judged over at least this many answers (and the
#: noise estimate updated every twice as many).
OPEN_ANSWERS = 24
#: ...or when nearly all of the latest this many were refused.
LATEST_ANSWERS = 16
#: A clean paced epoch adds this share of the pace set by the last cut.
INCREASE = 0.05
#: Weight of one epoch in the noise estimate (an exponential moving average).
NOISE_WEIGHT = 0.1
#: The noise estimate never exceeds this: a server that refuses nearly everything is
#: not noise, whatever the experiment said.
MAX_NOISE = 0.6
#: Accepted rates are measured over at least this long (seconds), so that a handful of
#: answers arriving together do not read as a huge rate.
MIN_SPAN = 0.05
#: The slowest pace (attempts per second): a minute between attempts.
MIN_PACE = 1 / 60


@attrs.frozen
class RateControlState:
    """A snapshot of the controller, for :meth:`trioclient.Client.statistics`.

    Attributes:
        pace: Attempts per second the client sends at most, or ``None`` while unpaced.
        pauses: Client-wide pauses so far (one per budget verdict).
        noise: The share of 429s judged not caused by this client's rate.
        paused_until: The trio time a client-wide pause ends (``-inf``: none).
    """

    pace: float | None
    pauses: int
    noise: float
    paused_until: float


class RateController:
    """AIMD on the sending rate, fed answers; it tells budget 429s from noise 429s.

    Feed it every answer (:meth:`on_answer`) with the time its attempt was sent and
    whether it was a 429; call :meth:`poll` before sending while
    :attr:`unjudged_refusals` is non-zero. Read :attr:`pace` (attempts per second,
    ``math.inf`` when unpaced) and :attr:`paused_until` (a client-wide "not before"
    time) to decide when the next attempt may go. See the module docstring.
    """

    def __init__(self) -> None:
        self.pace = math.inf
        self.paused_until = -math.inf
        self.pauses = 0
        self.noise = 0.0
        #: Counts the changes of pace and pause: a task that passed the gate and then
        #: waited for something else compares it to know whether its pass still holds.
        self.version = 0
        #: Moving average of the time an accepted answer takes (seconds; ``None``
        #: until one came back).
        self.latency: float | None = None
        #: Trio time the current pace was set; answers to older attempts are ignored.
        self.epoch_start = -math.inf
        #: Refusals in this epoch not yet judged: while there are any, :meth:`poll`
        #: before each send may find them judgeable (their time having come).
        self.unjudged_refusals = 0
        # This epoch's answers, (sent_at, refused, order); the latest "not before" a refusal
        # named (its arrival plus the server's wait), and the latest wait.
        self._samples: list[tuple[float, bool, float]] = []
        self._epoch_refusals = 0  # 429s among the samples
        self._not_before = -math.inf
        self._wait = 0.0
        # The experiment after a cut: the pace, share of 429s and accepted rate before it.
        self._trial: tuple[float, float, float] | None = None
        self._before_cuts = math.inf  # the pace before a run of cuts (no clean epoch between)
        self._clean_run = 0  # clean paced epochs in a row
        self._last_cut_pace = math.inf

    # -- feeding -----------------------------------------------------------------

    def on_answer(
        self,
        now: float,
        sent_at: float,
        refused: bool,
        wait: float = 0.0,
        order: float | None = None,
    ) -> str | None:
        """One answer came back (any status but a transport failure).

        Args:
            now: When it came back (``trio.current_time()``).
            sent_at: When its attempt was sent.
            refused: Whether it was a 429.
            wait: For a 429, how long the server asked to wait (or the backoff
                ceiling, when it named no wait).
            order: The attempt's place in the order of sending (a counter), when
                the caller knows it; else ``sent_at`` (which may tie: many attempts
                go at one instant on a virtual clock).

        Returns:
            The verdict this answer led to (see :meth:`poll`), or ``None``.
        """
        if not refused:
            took = now - sent_at
            self.latency = took if self.latency is None else 0.8 * self.latency + 0.2 * took
        if sent_at <= self.epoch_start:
            return None  # sent before the pace changed: no evidence about this pace
        self._samples.append((sent_at, refused, sent_at if order is None else order))
        if refused:
            self._epoch_refusals += 1
            self.unjudged_refusals += 1
            self._wait = wait
            self._not_before = max(self._not_before, now + wait)
        elif self.idle:
            # The common case, on every answer: open, and not one 429 in this epoch.
            # Nothing to judge (poll's delay before judging guards against counting
            # fast 429s before slow successes; with no 429 there is nothing to
            # over-count), and the epoch closes as clean once it is long enough: what
            # poll() concludes, without a pass over the samples per answer.
            n = len(self._samples)
            if n >= 2 * OPEN_ANSWERS:
                self._clean(now, 0, n)
                return "clean"
            return None
        return self.poll(now)

    @property
    def idle(self) -> bool:
        """Open and without a 429 this epoch: :meth:`poll` has nothing to judge (the
        epoch's clean close happens in :meth:`on_answer`), so callers may skip it."""
        return not self._epoch_refusals and self.pace == math.inf

    def poll(self, now: float) -> str | None:
        """Judge the epoch as it stands at ``now``.

        Returns ``"dry"`` (the budget ran out: pause and pace), ``"too fast"`` (paced,
        and more 429s than noise explains: cut), ``"noise"`` (the last cut changed
        nothing: undone), ``"clean"`` (an epoch without excess 429s), or ``None``.
        """
        # A 429 comes back faster than a completion: the attempts sent in the last two
        # answer-times are judged later, when their successes have had time to come
        # back; the answers in until then over-count the refusals. Before any
        # completion came back, the refusals are judged once their wait has passed.
        cutoff = now - (self._wait if self.latency is None else 2.0 * self.latency)
        judged = [sample for sample in self._samples if sample[0] <= cutoff]
        if not judged:
            return None
        n = len(judged)
        refused = sum(was_refused for _, was_refused, _ in judged)
        if not self.paced:
            # Open: random 429s are let be, up to half of all attempts (Google SRE's
            # client-side throttling starts where requests outnumber twice the
            # accepts). What calls for pacing is a budget run dry (nearly all of the
            # latest attempts refused), or more than half refused, beyond chance and
            # beyond the noise learned: then a cut, as an experiment.
            if refused and self._dry(judged, now):
                return "dry"
            if n >= OPEN_ANSWERS and refused >= n * max(0.5, self.noise) + 2 * math.sqrt(n):
                return self._too_many(now, refused, n)
            if n >= 2 * OPEN_ANSWERS:
                self._clean(now, refused, n)
                return "clean"
        elif self._significant(refused, n):
            return self._too_many(now, refused, n)
        elif n >= EPOCH_ANSWERS or (
            n >= EPOCH_MIN_ANSWERS and now - min(judged)[0] >= EPOCH_SECONDS
        ):
            self._clean(now, refused, n)
            return "clean"
        self.unjudged_refusals = sum(was_refused for was_refused in self._unjudged(cutoff))
        return None

    # -- reading -----------------------------------------------------------------

    @property
    def paced(self) -> bool:
        return self.pace != math.inf

    def interval(self) -> float:
        """Seconds between two attempts at the current pace (0 when unpaced)."""
        return 0.0 if self.pace == math.inf else 1.0 / self.pace

    def state(self) -> RateControlState:
        return RateControlState(
            pace=None if self.pace == math.inf else self.pace,
            pauses=self.pauses,
            noise=self.noise,
            paused_until=self.paused_until,
        )

    # -- the verdicts ------------------------------------------------------------

    def _unjudged(self, cutoff: float) -> list[bool]:
        return [was_refused for sent_at, was_refused, _ in self._samples if sent_at > cutoff]

    def _dry(self, judged: list[tuple[float, bool, float]], now: float) -> bool:
        # Every attempt sent since the last one accepted was refused, and there were
        # enough of them (attempts sent at the same time as an accepted one do not
        # count: a tie says nothing of order).
        last_accepted = max(
            (order for _, was_refused, order in self._samples if not was_refused),
            default=-math.inf,
        )
        run = sum(order > last_accepted for _, _, order in judged)
        if run < DRY_RUN and not _nearly_all_refused(judged):
            return False
        # Pause until the server's "not before", then pace at one attempt per server
        # wait: a dry bucket's wait is the time to its next token, so its refill time.
        wait = self._wait
        pace = 1.0 / wait if wait > 0 else MIN_PACE
        self._pause(now, always=True)
        self.noise = 0.0  # the 429s seen so far were this budget's, not noise
        self._new_epoch(now, max(pace, MIN_PACE), trial=None)
        self._last_cut_pace = self._before_cuts = self.pace
        return True

    def _significant(self, refused: int, n: int) -> bool:
        # More 429s than the learned noise explains: at least two beyond its mean, and
        # two standard deviations of a binomial draw beyond it.
        noise = self.noise
        excess = refused - noise * n
        return excess >= 2.0 + 2.0 * math.sqrt(n * noise * (1.0 - noise))

    def _accepted_rate(self, now: float, at_least: float) -> float:
        samples = self._samples
        first = min(sent_at for sent_at, _, _ in samples) if samples else now
        accepted = sum(not was_refused for _, was_refused, _ in samples)
        return accepted / max(now - first, at_least, MIN_SPAN)

    def _too_many(self, now: float, refused: int, n: int) -> str | None:
        share = refused / n
        trial = self._trial
        if trial is not None:
            before_pace, before_share, before_accepted = trial
            if n < TRIAL_ANSWERS and share <= before_share + _tolerance(before_share, n):
                return None  # not enough answers yet to tell noise from a budget
            accepted = self._accepted_rate(now, 0.0)
            if (
                share <= MAX_NOISE
                and abs(share - before_share) <= _tolerance(before_share, n)
                and 0 < accepted <= 0.8 * before_accepted
            ):
                # Slowing down kept the share of refusals and lost accepted answers in
                # proportion: these 429s are not ours. Undo the run of cuts made on
                # them, and learn their share.
                self.noise = min(MAX_NOISE, max(self.noise, (share + before_share) / 2))
                pace = max(before_pace, self._before_cuts)
                self._new_epoch(now, pace, trial=None)
                self._last_cut_pace = pace
                return "noise"
        # Too fast: pause once until the server's "not before", and pace no faster
        # than the server accepted during the epoch (when another client spends the
        # same budget, that is this client's share of it), but cut by half at most:
        # an epoch in which another client happened to take everything says little.
        accepted = self._accepted_rate(now, self._wait)
        if self.paced:
            pace = max(min(CUT * self.pace, accepted), MAX_CUT * self.pace, MIN_PACE)
        else:
            pace = max(accepted, MIN_PACE)  # unpaced: to what the server accepted
        if trial is None:
            self._before_cuts = self.pace  # the first cut of a run
        self._clean_run = 0
        if self.paced:
            self._pause(now)  # (unpaced, the cut is only an experiment: no pause yet)
        # The cut is an experiment: should the next epoch keep the same share of 429s
        # while accepting less, they were noise after all, and the cut is undone.
        self._new_epoch(now, pace, trial=(self.pace, share, self._accepted_rate(now, 0.0)))
        self._last_cut_pace = pace
        return "too fast"

    def _pause(self, now: float, always: bool = False) -> None:
        # One pause per verdict that the budget is spent: until the latest "not
        # before" the server named, if that is still ahead. (A dry bucket is often
        # judged only as its refused attempts wake to retry, their own wait over:
        # then the pause is the one they made, and the pace holds back the rest.)
        if self._not_before > now or always:
            if self.paused_until <= now:
                self.pauses += 1
            if self._not_before > now:
                self.paused_until = max(self.paused_until, self._not_before)
            self.version += 1

    def _clean(self, now: float, refused: int, n: int) -> None:
        share = refused / n
        # Unpaced, the noise estimate follows the share of 429s. Paced, it may only
        # fall (a noise verdict aside): near a budget, the budget's own few 429s per
        # epoch must not pass for noise, or they would raise the bar for cutting.
        noise = min(MAX_NOISE, (1 - NOISE_WEIGHT) * self.noise + NOISE_WEIGHT * share)
        self.noise = noise if not self.paced else min(noise, self.noise)
        pace = self.pace
        if pace != math.inf:
            if pace > 2.0 * self._accepted_rate(now, 0.0) / max(1.0 - share, 0.1):
                pace = math.inf  # the pace no longer binds: the client sends slower
            elif refused - self.noise * n >= 1.0:
                # Some 429s beyond the noise, not enough to cut for: the pace is at the
                # budget's edge. Hold it there.
                self._clean_run = 0
            else:
                # Additive increase, the step doubling with each clean epoch in a row:
                # probing gently after a cut, then, once nothing has refused for a
                # while (the other client on the key went away, say), by a quarter
                # per epoch, as a slow start would.
                self._clean_run += 1
                step = INCREASE * self._last_cut_pace * 2 ** min(self._clean_run - 1, 2)
                pace = max(pace + step, pace * 1.25 if self._clean_run > 2 else 0.0)
        self._new_epoch(now, pace, trial=None)

    def _new_epoch(self, now: float, pace: float, trial: tuple[float, float, float] | None) -> None:
        if pace != self.pace:
            # Only a change of pace makes older attempts stale.
            self.epoch_start = now
            self.version += 1
        self.pace = pace
        self._trial = trial
        self._samples = []
        self._epoch_refusals = 0
        self._not_before = -math.inf
        self.unjudged_refusals = 0


def _nearly_all_refused(judged: list[tuple[float, bool, float]]) -> bool:
    """Whether the latest attempts (by the time they were sent) were refused far more
    often than a coin would refuse them: 15 of 16, or 10 of 10.

    With fewer attempts in flight than a run needs, a dry bucket lets one through per
    round of retries (the one that meets its new token) and refuses the rest.
    Refusals at random, 40 % of them, pass this about once in 100,000 draws.
    """
    orders = sorted(order for _, _, order in judged)
    if len(orders) < LATEST_ANSWERS:
        return False
    # All of those sent with the oldest of them (without a counter, attempts sent at
    # the same instant tie, and a tie says nothing of order).
    oldest = orders[-LATEST_ANSWERS]
    latest = [was_refused for _, was_refused, order in judged if order >= oldest]
    n = len(latest)
    return sum(latest) >= 0.5 * n + 3.1 * math.sqrt(0.25 * n)


def before_share_not_beaten(before: float, after: float, n: int) -> bool:
    """Whether a share of 429s measured on ``n`` answers after a cut is not
    significantly below the share ``before`` it."""
    return before - after <= _tolerance(before, n)


def _tolerance(share: float, n: int) -> float:
    """How far a share of 429s measured on ``n`` answers may stray by chance."""
    p = min(max(share, 0.05), 0.95)
    return 0.05 + 2.0 * math.sqrt(p * (1.0 - p) / max(n, 1))
