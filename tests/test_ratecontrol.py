"""The rate controller on its own: a sans-I/O value fed answers stamped with a made-up
clock. A small simulator plays a sender (wanting ``demand`` attempts a second, paced by
the controller) against a server that refuses either from a bucket or at random."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from trioclient._ratecontrol import RateController

LATENCY = 0.05


class Bucket:
    """A token bucket: ``rate`` per second, ``capacity`` deep, starting full."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate, self.capacity, self.level, self.updated = rate, capacity, capacity, 0.0

    def __call__(self, now: float) -> tuple[bool, float]:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level < 1:
            return True, (1 - self.level) / self.rate
        self.level -= 1
        return False, 0.0


def at_random(share: float, seed: int = 1) -> Callable[[float], tuple[bool, float]]:
    rng = random.Random(seed)
    return lambda now: (rng.random() < share, 1.0)


def simulate(
    controller: RateController,
    server: Callable[[float], tuple[bool, float]],
    demand: float,
    attempts: int,
) -> list[tuple[float, bool]]:
    """Send ``attempts`` attempts as fast as ``demand`` and the controller allow; each
    is answered LATENCY later. Returns (sent_at, refused) per attempt."""
    now = 0.0
    in_flight: list[tuple[float, float, bool, float]] = []  # (answer_at, sent_at, refused, wait)
    log: list[tuple[float, bool]] = []
    last_sent = -math.inf
    for _ in range(attempts):
        gap = max(1.0 / demand, controller.interval())
        now = max(now, last_sent + gap, controller.paused_until)
        # Deliver the answers due by now, in order.
        in_flight.sort()
        while in_flight and in_flight[0][0] <= now:
            answer_at, sent_at, refused, wait = in_flight.pop(0)
            controller.on_answer(answer_at, sent_at, refused, wait)
            now = max(now, controller.paused_until)
        refused, wait = server(now)
        in_flight.append((now + LATENCY, now, refused, wait))
        log.append((now, refused))
        last_sent = now
    for answer_at, sent_at, refused, wait in sorted(in_flight):
        controller.on_answer(answer_at, sent_at, refused, wait)
    return log


@pytest.mark.parametrize("share", [0.05, 0.15, 0.4])
def test_random_429s_do_not_slow_the_sender(share: float) -> None:
    controller = RateController()
    log = simulate(controller, at_random(share), demand=200.0, attempts=2000)
    elapsed = log[-1][0] - log[0][0]
    # 2000 attempts at 200 a second take 10 s; random refusals must not stretch that
    # much (a cut or two while the controller learns the noise is allowed).
    assert elapsed < 10.0 * 1.25
    assert controller.pauses <= 2
    assert controller.pace == math.inf


def test_a_bucket_is_paced_to_its_rate() -> None:
    controller = RateController()
    bucket = Bucket(rate=2.0, capacity=20.0)
    log = simulate(controller, bucket, demand=200.0, attempts=400)
    # Past the first 100 attempts, the controller sends near the bucket's rate...
    later = log[100:]
    sent_rate = len(later) / (later[-1][0] - later[0][0])
    assert 2.0 * 0.8 < sent_rate < 2.0 * 1.3
    # ...and few of them are refused (unpaced, nearly all would be).
    refused = sum(r for _, r in later)
    assert refused / len(later) < 0.2
    assert controller.pace < 4.0 and controller.pauses >= 1


def run_dry(controller: RateController, wait: float = 0.5) -> float:
    """Thirty answers accepted, then every attempt refused: a bucket run dry."""
    now = 0.0
    for _ in range(30):
        now += 0.01
        controller.on_answer(now, now - LATENCY, False)
    verdict = None
    while verdict != "dry":
        now += 0.01
        verdict = controller.on_answer(now, now - LATENCY, True, wait)
        assert now < 1.0, "never judged dry"
    return now


def test_a_bucket_run_dry_pauses_once_and_paces_at_one_per_server_wait() -> None:
    controller = RateController()
    now = run_dry(controller, wait=0.5)
    assert controller.pauses == 1
    assert controller.paused_until == pytest.approx(now + 0.5)
    assert controller.pace == pytest.approx(1 / 0.5)


def test_answers_sent_before_the_pace_changed_change_nothing() -> None:
    controller = RateController()
    now = run_dry(controller)
    pace, start, pauses = controller.pace, controller.epoch_start, controller.pauses
    # Fifty more refusals, of attempts that were on the wire before the verdict: they
    # say nothing about the new pace.
    for i in range(50):
        controller.on_answer(now + 0.01 * i, start - 0.001, True, 0.5)
    assert (controller.pace, controller.pauses) == (pace, pauses)


def test_random_429s_never_look_dry() -> None:
    # Refusals at 40 %, answered together: even when every answer in is a refusal
    # for a moment, the latest attempts are judged only once their successes could
    # have come back, and then they are not nearly all refused.
    controller = RateController()
    rng = random.Random(7)
    now = 0.0
    for _ in range(3000):
        now += 0.005
        refused = rng.random() < 0.4
        # A refusal comes back at once, a success after LATENCY.
        controller.on_answer(now + (0.0 if refused else LATENCY), now, refused, 1.0)
    assert controller.pace == math.inf and controller.pauses == 0
    assert controller.noise == pytest.approx(0.4, abs=0.1)


def test_a_cut_that_keeps_the_share_of_429s_is_undone_as_noise() -> None:
    controller = RateController()
    now = run_dry(controller, wait=0.05)  # paced at 20 a second
    paced_at = controller.pace
    rng = random.Random(3)
    verdicts = []
    # From now on the refusals are random, one in three, whatever the pace: the
    # controller cuts, sees the same share at the slower pace, and undoes the cut.
    last = now
    for _ in range(400):
        now = max(now + 0.001, last + controller.interval(), controller.paused_until)
        last = now
        verdict = controller.on_answer(now + LATENCY, now, rng.random() < 1 / 3, 0.05)
        if verdict in ("too fast", "noise"):
            verdicts.append(verdict)
        if verdict == "noise":
            break
    assert verdicts[0] == "too fast" and verdicts[-1] == "noise"
    assert controller.pace >= paced_at
    assert controller.noise == pytest.approx(1 / 3, abs=0.15)
