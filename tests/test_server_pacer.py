"""The shared pacer: exact wake-up times on trio's clock, paced writes, cancellation."""

from __future__ import annotations

import socket
from collections import deque

import pytest
import trio
import trio.testing

from trioclient.testing._pacer import Pacer


async def test_wait_until_wakes_each_task_at_its_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer()
    woke: dict[str, float] = {}

    async def waiter(name: str, when: float) -> None:
        await pacer.wait_until(when)
        woke[name] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        start = trio.current_time()
        for name, offset in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("past", -1.0)]:
            nursery.start_soon(waiter, name, start + offset)
        await trio.sleep(0.5)
        nursery.start_soon(waiter, "late-newcomer", start + 0.75)  # earlier than the pacer's sleep
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert woke["past"] == start
    assert woke["late-newcomer"] == pytest.approx(start + 0.75)
    assert [woke[n] - start for n in "abc"] == pytest.approx([1.0, 2.0, 3.0])


async def test_a_cancelled_waiter_leaves_the_others_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer()
    woke: list[float] = []

    async def waiter(when: float) -> None:
        await pacer.wait_until(when)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        start = trio.current_time()
        with trio.move_on_after(0.5):
            await pacer.wait_until(start + 1.0)  # cancelled while parked
        nursery.start_soon(waiter, start + 2.0)
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert woke == [pytest.approx(start + 2.0)]


async def test_send_steps_writes_each_step_at_its_due_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer()
    left, right = socket.socketpair()
    left.setblocking(False)
    right.setblocking(False)
    seen: list[tuple[float, bytes]] = []
    lags: deque[float] = deque()

    async def never(_: bytes) -> None:
        raise AssertionError("a roomy socket never needs send_all")

    async def watch() -> None:
        for _ in range(8):
            await trio.sleep(0.5)
            try:
                seen.append((trio.current_time() - start, right.recv(100)))
            except BlockingIOError:
                seen.append((trio.current_time() - start, b""))

    with left, right:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.run)
            start = trio.current_time()
            nursery.start_soon(watch)
            steps = [(start + 0.75, b"a"), (start + 1.75, b"b"), (start + 2.75, b"c")]
            await pacer.send_steps(left.fileno(), steps, never, lags)
            finished = trio.current_time() - start
            await trio.sleep(2)
            nursery.cancel_scope.cancel()
    assert finished == pytest.approx(2.75)
    assert [data for _, data in seen] == [b"", b"a", b"", b"b", b"", b"c", b"", b""]
    assert list(lags) == pytest.approx([0.0, 0.0, 0.0])


async def test_send_steps_coalesces_overdue_steps_and_records_lateness(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer()
    left, right = socket.socketpair()
    left.setblocking(False)
    lags: deque[float] = deque()

    async def never(_: bytes) -> None:
        raise AssertionError("not expected")

    with left, right:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.run)
            now = trio.current_time()
            steps = [(now - 0.2, b"x"), (now - 0.1, b"y"), (now + 0.5, b"z")]
            await pacer.send_steps(left.fileno(), steps, never, lags)
            nursery.cancel_scope.cancel()
        assert right.recv(10) == b"xyz"
    assert list(lags) == pytest.approx([0.2, 0.1, 0.0])


async def test_send_steps_hands_a_full_buffer_back_to_send_all() -> None:
    pacer = Pacer()
    left, right = socket.socketpair()
    left.setblocking(False)
    big = b"q" * (8 * 1024 * 1024)  # far more than a socket buffer holds
    handed_back: list[int] = []
    received = bytearray()
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(left))
    reader = trio.SocketStream(trio.socket.from_stdlib_socket(right))

    async def send_all(data: bytes) -> None:
        handed_back.append(len(data))
        await stream.send_all(data)

    async def drain() -> None:
        while len(received) < len(big) + 3:
            received.extend(await reader.receive_some(1 << 20))

    with trio.fail_after(20):
        async with stream, reader, trio.open_nursery() as nursery:
            nursery.start_soon(pacer.run)
            nursery.start_soon(drain)
            now = trio.current_time()
            await pacer.send_steps(left.fileno(), [(now, big), (now + 0.05, b"end")], send_all)
            await trio.sleep(0.2)
            nursery.cancel_scope.cancel()
    assert handed_back and 0 < handed_back[0] <= len(big)
    assert bytes(received) == big + b"end"


async def test_send_steps_to_a_closed_peer_raises_broken_resource_error() -> None:
    pacer = Pacer()
    left, right = socket.socketpair()
    left.setblocking(False)
    right.close()

    async def never(_: bytes) -> None:
        raise AssertionError("not expected")

    with left, trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pacer.run)
            with pytest.raises(trio.BrokenResourceError):
                await pacer.send_steps(left.fileno(), [(trio.current_time(), b"x")], never)
            nursery.cancel_scope.cancel()
