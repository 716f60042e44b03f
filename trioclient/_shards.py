"""Sharded runs: N workers split one input by ``custom_id``, and their parts merge.

``trioclient batch INPUT -o OUTPUT --shard I/N`` runs only the requests whose
``custom_id`` falls in shard I of N, and writes them to its own part,
``OUTPUT.part-I-of-N``, a complete durable output of its own (resumed, locked and
repaired like any other). Which shard a request belongs to depends on its id alone::

    shard = blake2b(custom_id, 8-byte digest) mod N, plus one

so every worker, on any machine and any Python, agrees without talking to the others
(Python's own ``hash()`` is salted per process and would not). A bad input line with
no id belongs to the shard of ``line-K``, K its line number.

``trioclient batch INPUT -o OUTPUT --merge`` checks the parts against INPUT and writes
OUTPUT: every id of the input exactly once. It refuses, writing nothing, when a part is
missing, unfinished (a worker killed and not yet rerun), still running (its lock is
held), holds an id that is not its own (parts of another input or another N), or when
OUTPUT already exists. The merge is an explicit step rather than the last worker's
job: workers on different machines finish independently, and "are all parts done?"
is then one check with a clear answer instead of a race between the last two.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from typing import IO, Any

import attrs

from ._batch_format import InputScan, classify_record, plain_id, scan

__all__ = [
    "MergeError",
    "MergeSummary",
    "Shard",
    "merge_parts",
    "parse_shard",
    "shard_of",
    "take_shard",
]

_PART = re.compile(r"\.part-(\d+)-of-(\d+)$")


class MergeError(Exception):
    """The parts cannot be merged (the message says which part, and what to run)."""


def shard_of(key: str, count: int) -> int:
    """The shard (1 to ``count``) that the request with id ``key`` belongs to."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


@attrs.frozen
class Shard:
    """Shard ``index`` of ``count`` (1-based: ``Shard(1, 4)`` to ``Shard(4, 4)``)."""

    index: int
    count: int

    def __attrs_post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard {self.index}/{self.count}: N must be at least 1")
        if not 1 <= self.index <= self.count:
            raise ValueError(
                f"shard {self.index}/{self.count}: I must be between 1 and N ({self.count})"
            )

    def owns(self, key: str) -> bool:
        """Whether the request with id ``key`` is this shard's."""
        return shard_of(key, self.count) == self.index

    def part(self, output: str) -> str:
        """This shard's part of ``output``: ``OUTPUT.part-I-of-N``."""
        return f"{output}.part-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> ``Shard(2, 4)``; a clear ValueError for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"expected I/N, such as 1/4 (shard I of N workers), got {text!r}")
    return Shard(int(match[1]), int(match[2]))


@attrs.frozen
class MergeSummary:
    """What :func:`merge_parts` wrote."""

    parts: int
    total: int
    succeeded: int
    failed: int
    output: str


def _find_parts(output: str, input_name: str) -> dict[int, str]:
    """The parts of ``output`` on disk, by shard, all of one N (or a MergeError)."""
    found: dict[int, dict[int, str]] = {}
    for path in glob.glob(glob.escape(output) + ".part-*-of-*"):
        match = _PART.search(path)
        if match is not None and path == output + match[0]:
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise MergeError(
            f"no parts of {output} to merge: the workers write {output}.part-I-of-N "
            "(trioclient batch INPUT -o OUTPUT --shard I/N)"
        )
    if len(found) > 1:
        counts = ", ".join(f"N={n}" for n in sorted(found))
        raise MergeError(
            f"parts of {output} from runs with different shard counts ({counts}): keep the "
            "parts of one N (move the others away) and merge again"
        )
    ((count, parts),) = found.items()
    missing = [i for i in range(1, count + 1) if i not in parts]
    if missing:
        raise MergeError(
            f"part {missing[0]} of {count} is missing ({output}.part-{missing[0]}-of-{count}): "
            f"run `trioclient batch {input_name} -o {output} --shard {missing[0]}/{count}`, "
            "then merge again"
        )
    return parts


def merge_parts(
    input: str | IO[Any],
    output: str,
    *,
    lock: Callable[[str], int],
) -> MergeSummary:
    """Merge the finished parts of ``output`` into ``output`` (blocking: run it in a
    worker thread from trio). ``lock(path)`` takes a path's run lock (see the runner)
    and returns a descriptor that holds it until closed.

    Raises:
        MergeError: see the module documentation; nothing is written then.
    """
    if os.path.lexists(output):
        raise MergeError(
            f"{output} already exists (an earlier merge, or a run without --shard): move it "
            "away to merge again; nothing was written"
        )
    input_name = input if isinstance(input, str) else "-"
    parts = _find_parts(output, input_name)
    count = len(parts)
    held: list[int] = []
    try:
        # While merging, no worker may write a part, and no run the output.
        held.append(lock(output))
        for index in sorted(parts):
            held.append(lock(parts[index]))
        if isinstance(input, str):
            with open(input, "rb") as f:
                found = scan(f)
        else:
            found = scan(input)
        if found.duplicates:
            raise MergeError(f"the input has duplicate custom_id values ({len(found.duplicates)})")
        expected: dict[str, int] = {cid: shard_of(cid, count) for cid in found.ids}
        no_id_lines = {bad.line for bad in found.bad if bad.custom_id is None}
        return _copy_parts(parts, output, input_name, expected, no_id_lines)
    finally:
        for fd in held:
            os.close(fd)


def _copy_parts(
    parts: dict[int, str],
    output: str,
    input_name: str,
    expected: dict[str, int],
    no_id_lines: set[int],
) -> MergeSummary:
    count = len(parts)
    seen: set[str] = set()
    seen_lines: set[int] = set()
    succeeded = failed = 0
    directory = os.path.dirname(os.path.abspath(output))
    fd, temp = tempfile.mkstemp(prefix=".trioclient-merge-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as merged:
            for index in sorted(parts):
                path = parts[index]
                with open(path, "rb") as part:
                    for raw in part:
                        if not raw.endswith(b"\n"):
                            break  # a line torn by a kill: that request counts as missing
                        record = classify_record(raw)
                        if record is None:
                            merged.write(raw)  # not ours to judge: it stays
                            continue
                        if record.custom_id is None:
                            assert record.bad_line is not None
                            owner = shard_of(plain_id(record.bad_line), count)
                            if record.bad_line in seen_lines or owner != index:
                                _foreign(path, f"the error record of line {record.bad_line}")
                            seen_lines.add(record.bad_line)
                        else:
                            cid = record.custom_id
                            if expected.get(cid) != index or cid in seen:
                                _foreign(path, f"custom_id {cid!r}")
                            seen.add(cid)
                        if record.ok:
                            succeeded += 1
                        else:
                            failed += 1
                        merged.write(raw)
            _check_complete(parts, output, input_name, expected, seen, no_id_lines - seen_lines)
            merged.flush()
            os.fsync(merged.fileno())
        os.replace(temp, output)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    return MergeSummary(
        parts=count,
        total=len(expected) + len(no_id_lines),
        succeeded=succeeded,
        failed=failed,
        output=output,
    )


def _foreign(path: str, what: str) -> None:
    raise MergeError(
        f"{path} holds {what}, which is not its own (a second time, or another shard's): "
        "were the parts made from another input, or with another N? nothing was written"
    )


def _check_complete(
    parts: dict[int, str],
    output: str,
    input_name: str,
    expected: dict[str, int],
    seen: set[str],
    lines_missing: set[int],
) -> None:
    missing: dict[int, int] = {}
    for cid, index in expected.items():
        if cid not in seen:
            missing[index] = missing.get(index, 0) + 1
    for line in lines_missing:
        index = shard_of(plain_id(line), len(parts))
        missing[index] = missing.get(index, 0) + 1
    if missing:
        index = min(missing)
        others = len(missing) - 1
        raise MergeError(
            f"shard {index}/{len(parts)} is not finished: {missing[index]} of its requests "
            f"have no result in {parts[index]}"
            + (f" (and {others} other shard{'s' if others > 1 else ''} too)" if others else "")
            + f"; run `trioclient batch {input_name} -o {output} --shard {index}/{len(parts)}` to "
            "finish it, then merge again; nothing was written"
        )


def take_shard(found: InputScan, shard: Shard) -> InputScan:
    """The part of an input's scan that is ``shard``'s (duplicates stay whole: every
    shard refuses an input with duplicate ids, the same way)."""
    ids = {cid: line for cid, line in found.ids.items() if shard.owns(cid)}
    bad = [b for b in found.bad if shard.owns(b.custom_id or plain_id(b.line))]
    without_id = sum(1 for b in bad if b.custom_id is None)
    return InputScan(
        plain=found.plain,
        total=len(ids) + without_id,
        ids=ids,
        bad=bad,
        duplicates=found.duplicates,
    )
