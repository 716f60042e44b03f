"""Sharded runs: N workers split one input by custom_id, and their parts merge.

In-process runs against a scripted API (``httpx.MockTransport``) pin the split (each id
sent by exactly one shard, bad lines reported once) and every refusal of the merge;
the kill -9 rounds at the end run real worker processes against the embedded server.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing
from test_batch_file import FakeAPI, by_id, client_for, line, write_input
from test_crash_resume import cli_env, wait_for, whole_lines

from trioclient._batch_file import BatchFileError, lock_output, run_batch_file
from trioclient._shards import MergeError, Shard, merge_parts, parse_shard, shard_of
from trioclient.testing import open_server

ROOT = Path(__file__).resolve().parent.parent


# --- which shard a request belongs to ---------------------------------------------------


def test_every_id_belongs_to_exactly_one_shard_and_the_shards_share_the_work() -> None:
    ids = [f"req-{i}" for i in range(4_000)]
    for count in (1, 2, 3, 7):
        shards = [Shard(i, count) for i in range(1, count + 1)]
        owners = [[s for s in shards if s.owns(cid)] for cid in ids]
        assert all(len(o) == 1 for o in owners)
        sizes = [sum(1 for o in owners if o[0] == s) for s in shards]
        # A hash, not a round-robin: near-even, never empty at this size.
        assert min(sizes) > len(ids) / count * 0.8, sizes


def test_the_split_is_the_same_in_every_process() -> None:
    """Python's hash() is salted per process; the shard of an id must not be."""
    ids = [f"q{i}" for i in range(200)]
    script = (
        "import json, sys\n"
        "from trioclient._shards import shard_of\n"
        "print(json.dumps([shard_of(cid, 5) for cid in json.loads(sys.argv[1])]))\n"
    )
    seen = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run(
            [sys.executable, "-c", script, json.dumps(ids)],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        )
        seen.append(json.loads(out.stdout))
    assert seen[0] == seen[1] == [shard_of(cid, 5) for cid in ids]
    assert set(seen[0]) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("3/2", "shard 3/2: I must be between 1 and N (2)"),
        ("0/2", "shard 0/2: I must be between 1 and N (2)"),
        ("0/0", "shard 0/0: N must be at least 1"),
        ("a/b", "expected I/N, such as 1/4 (shard I of N workers), got 'a/b'"),
        ("1.5/2", "expected I/N"),
        ("2", "expected I/N"),
        ("1/2/3", "expected I/N"),
    ],
)
def test_a_bad_shard_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_shard(text)


def test_a_good_shard_parses() -> None:
    assert parse_shard("2/4") == Shard(2, 4)
    assert Shard(2, 4).part("out.jsonl") == "out.jsonl.part-2-of-4"


# --- sharded runs and the merge, in-process ------------------------------------------------


async def run_shards(source: Path, out: Path, count: int, api: FakeAPI) -> None:
    async with client_for(api) as client:
        for index in range(1, count + 1):
            part = Shard(index, count).part(str(out))
            await run_batch_file(client, source, part, shard=(index, count))


def make_parts(source: Path, out: Path, count: int) -> None:
    """Every shard run to its end, on a virtual clock (for the synchronous tests)."""
    trio.run(
        run_shards,
        source,
        out,
        count,
        FakeAPI(),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


def mixed_input(path: Path, n: int) -> list[str]:
    lines = [line(f"q{i}", f"p{i}") for i in range(n)]
    lines[5] = "{not json"  # a bad line without an id: exactly one shard reports it
    lines[9] = line("e9", "embed", url="/v1/embeddings")  # a bad line with an id
    write_input(path, lines)
    return [f"q{i}" for i in range(n) if i not in (5, 9)] + ["e9"]


async def test_shards_split_the_input_and_merge_into_every_id_exactly_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = mixed_input(source, 60)
    api = FakeAPI()
    await run_shards(source, out, 3, api)
    assert sorted(api.prompts) == sorted(f"p{i}" for i in range(60) if i not in (5, 9))
    for index in (1, 2, 3):
        part = by_id(Path(Shard(index, 3).part(str(out))))
        assert part and all(shard_of(cid, 3) == index for cid in part)
    merged = merge_parts(str(source), str(out), lock=lock_output)
    assert (merged.parts, merged.total, merged.succeeded, merged.failed) == (3, 60, 58, 2)
    final = by_id(out)
    assert sorted(final) == sorted(ids)
    no_id = [json.loads(x) for x in out.read_text().splitlines() if '"custom_id":null' in x]
    assert [r["error"]["line"] for r in no_id] == [6]
    # Running a shard again sends nothing: its part is its own durable output.
    api.prompts.clear()
    async with client_for(api) as client:
        again = await run_batch_file(client, source, Shard(2, 3).part(str(out)), shard=(2, 3))
    assert api.prompts == [] and again.remaining == 0 and again.skipped_already_done > 0


def test_the_merge_refuses_and_writes_nothing_when_a_part_is_missing_or_unfinished(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, [line(f"q{i}", f"p{i}") for i in range(30)])
    with pytest.raises(MergeError, match=r"no parts of .*out\.jsonl to merge"):
        merge_parts(str(source), str(out), lock=lock_output)
    make_parts(source, out, 3)
    part2 = Path(Shard(2, 3).part(str(out)))
    kept = part2.read_text()

    # A worker killed mid-run: its part lacks lines and ends torn.
    lines = kept.splitlines(keepends=True)
    part2.write_text("".join(lines[:-2]) + lines[-2][:20])
    with pytest.raises(MergeError, match=r"shard 2/3 is not finished: 2 of its requests") as e:
        merge_parts(str(source), str(out), lock=lock_output)
    assert f"trioclient batch {source} -o {out} --shard 2/3" in str(e.value)
    assert not out.exists()

    # A part not there at all.
    part2.unlink()
    with pytest.raises(MergeError, match=r"part 2 of 3 is missing"):
        merge_parts(str(source), str(out), lock=lock_output)
    assert not out.exists()

    # Parts of another N beside these.
    part2.write_text(kept)
    Path(Shard(1, 2).part(str(out))).write_text("")
    with pytest.raises(MergeError, match=r"different shard counts \(N=2, N=3\)"):
        merge_parts(str(source), str(out), lock=lock_output)
    Path(Shard(1, 2).part(str(out))).unlink()

    # A part that holds another shard's id (made with another N, renamed).
    Path(Shard(3, 3).part(str(out))).write_text(
        Path(Shard(3, 3).part(str(out))).read_text() + kept.splitlines(keepends=True)[0]
    )
    with pytest.raises(MergeError, match=r"part-3-of-3 holds custom_id 'q\d+', which is not"):
        merge_parts(str(source), str(out), lock=lock_output)
    assert not out.exists()


def test_the_merge_refuses_a_running_worker_and_an_existing_output(tmp_path: Path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, [line(f"q{i}", f"p{i}") for i in range(12)])
    make_parts(source, out, 2)
    held = lock_output(Shard(1, 2).part(str(out)))  # a worker still running
    try:
        with pytest.raises(BatchFileError, match=r"another run is writing to .*part-1-of-2"):
            merge_parts(str(source), str(out), lock=lock_output)
    finally:
        os.close(held)
    assert not out.exists()
    merged = merge_parts(str(source), str(out), lock=lock_output)
    assert merged.succeeded == 12
    first = out.read_bytes()
    with pytest.raises(MergeError, match=r"already exists"):
        merge_parts(str(source), str(out), lock=lock_output)
    assert out.read_bytes() == first


# --- kill -9 rounds on sharded worker processes ----------------------------------------


@pytest.mark.slow
async def test_sharded_workers_killed_at_random_then_rerun_merge_into_every_id_exactly_once(
    tmp_path: Path,
) -> None:
    rng = random.Random(17)
    count, rounds = 3, 4
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = [f"req-{i:04d}" for i in range(240)]
    write_input(
        source,
        [
            json.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "trioclient-sim",
                        "messages": [{"role": "user", "content": cid}],
                    },
                }
            )
            for cid in ids
        ],
    )
    parts = [Path(Shard(i, count).part(str(out))) for i in range(1, count + 1)]
    remembered: dict[str, str] = {}
    kills = 0
    async with open_server(ttft="uniform:0.1,0.15", seed=17) as server:
        batch = [sys.executable, "-m", "trioclient", "batch", str(source), "-o", str(out)]

        def worker(index: int) -> list[str]:
            options = ["--base-url", server.base_url, "--max-concurrent", "3"]
            return [*batch, "--shard", f"{index}/{count}", *options]

        with trio.fail_after(150):
            for round_number in range(rounds):
                before = server.statistics().chat_requests
                processes = [
                    await trio.lowlevel.open_process(
                        worker(i),
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env=cli_env(),
                    )
                    for i in range(1, count + 1)
                ]
                try:

                    def begun(b: int = before, ps: list[trio.Process] = processes) -> bool:
                        return server.statistics().chat_requests > b + count or all(
                            p.poll() is not None for p in ps
                        )

                    assert await wait_for(begun, limit=30)
                    await trio.sleep(rng.uniform(0.1, 0.5))
                    for p in processes:  # every worker of the round, at its own moment
                        await trio.sleep(rng.uniform(0, 0.1))
                        if p.poll() is None:
                            p.send_signal(signal.SIGKILL)
                            kills += 1
                finally:
                    for p in processes:
                        if p.poll() is None:
                            p.kill()
                        with trio.CancelScope(shield=True):
                            await p.wait()
                now: dict[str, str] = {}
                for part in parts:
                    now.update(whole_lines(part))
                for cid, text in remembered.items():
                    assert now.get(cid) == text, f"{cid}: a written result was lost or changed"
                remembered.update(now)
                if round_number == 0:
                    # A merge now is refused: after one killed round no shard is finished
                    # (80 requests, 3 at a time, 0.1 s or more each: more than 2.6 s of
                    # work, against at most a second before the kill).
                    early = await trio.run_process(
                        [*batch, "--merge"],
                        capture_stderr=True,
                        check=False,
                        env=cli_env(),
                    )
                    assert early.returncode == 1
                    assert b"is not finished" in early.stderr and not out.exists()
            # Rerun every worker to its end, then merge.
            async with trio.open_nursery() as nursery:
                results: dict[int, subprocess.CompletedProcess[bytes]] = {}

                async def finish(index: int) -> None:
                    results[index] = await trio.run_process(
                        worker(index), capture_stderr=True, check=False, env=cli_env()
                    )

                for index in range(1, count + 1):
                    nursery.start_soon(finish, index)
            for index, result in results.items():
                assert result.returncode == 0, (index, result.stderr.decode())
            merge = await trio.run_process(
                [*batch, "--merge"],
                capture_stderr=True,
                check=False,
                env=cli_env(),
            )
    assert merge.returncode == 0, merge.stderr.decode()
    assert f"merged {count} parts: {len(ids)} succeeded, 0 failed".encode() in merge.stderr
    assert kills >= rounds * 2, "the rounds killed workers mid-run"
    assert 0 < len(remembered) < len(ids)
    final = whole_lines(out)  # well-formed records, no id twice
    assert sorted(final) == ids  # every custom_id exactly once
    for cid, text in remembered.items():
        assert final[cid] == text, f"{cid}: a result written before a kill was lost or changed"
