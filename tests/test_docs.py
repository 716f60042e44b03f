"""The docs cannot drift from the code: every ``python`` block in ``docs/*.md`` and the
README runs, and ``docs/api.md`` is exactly what ``docs/_gen_api.py`` generates from the
docstrings.

Blocks run as a reader would run them, as scripts: each page's blocks in a subprocess of
their own (each block in a fresh namespace), all pages at once. Blocks that call
``trioclient.Client()`` bare use ``XAI_API_KEY`` and ``TRIOCLIENT_BASE_URL``, which point
at an embedded server (``python -m trioclient.testing``) started for this module.

A block may be skipped only with a ``<!-- not-run: reason -->`` comment on the line
before it, and only a handful may be. ``api.md`` is not run: its examples are docstring
excerpts, and the regeneration test below already ties it to the code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
GUIDE = sorted(p for p in DOCS.glob("*.md") if p.name != "api.md")
PAGES = [*GUIDE, README]
BY_NAME = {p.name: p for p in PAGES}
MAX_NOT_RUN = 3

FENCE = re.compile(r"^```python\s*$")
NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")

# Runs one page's blocks, each in a fresh namespace, and reports one JSON line per block
# on the real stdout (the block's own prints are captured).
RUNNER = r"""
import contextlib, io, json, sys, traceback
for block in json.load(open(sys.argv[1])):
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            code = compile(block["code"], f"{block['page']}:{block['line']}", "exec")
            exec(code, {"__name__": "__main__"})
        report = {"line": block["line"], "ok": True, "out": captured.getvalue()}
    except BaseException:
        report = {"line": block["line"], "ok": False, "out": captured.getvalue(),
                  "error": traceback.format_exc()}
    print(json.dumps(report), file=sys.__stdout__, flush=True)
"""


def blocks(page: Path) -> Iterator[dict[str, Any]]:
    """Every ``python`` block of ``page``: its first line number, code and skip reason."""
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        if FENCE.match(lines[i]):
            start = i + 1
            end = start
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            marker = NOT_RUN.match(lines[i - 1]) if i > 0 else None
            yield {
                "page": page.name,
                "line": start + 1,
                "code": "\n".join(lines[start:end]) + "\n",
                "not_run": marker.group("reason") if marker else None,
            }
            i = end
        i += 1


@pytest.fixture(scope="module")
def page_reports(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, list[dict[str, Any]]]]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("XAI_API_KEY", "OPENAI_API_KEY", "TRIOCLIENT_BASE_URL")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "trioclient.testing", "--port", "0", "--latency", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.search(r"(http://\S+)", first)
        assert match, f"the docs server did not start: {first!r}"
        env["TRIOCLIENT_BASE_URL"] = match.group(1)
        env["XAI_API_KEY"] = "sk-docs-test"
        runners = {}
        for page in PAGES:
            to_run = [b for b in blocks(page) if b["not_run"] is None]
            listing = tmp_path_factory.mktemp("docs") / f"{page.stem}.json"
            listing.write_text(json.dumps(to_run))
            process = subprocess.Popen(
                [sys.executable, "-c", RUNNER, str(listing)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=ROOT,
            )
            runners[page.name] = process
        reports: dict[str, list[dict[str, Any]]] = {}
        for name, process in runners.items():
            try:
                out, err = process.communicate(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
                err += "\n(killed after 90 s)"
            reports[name] = [json.loads(line) for line in out.splitlines() if line.strip()]
            if process.returncode != 0:
                reports[name].append({"line": 0, "ok": False, "out": "", "error": err})
        yield reports
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()


@pytest.mark.parametrize("page", [p.name for p in PAGES])
def test_every_python_block_runs(page: str, page_reports: dict[str, list[dict[str, Any]]]) -> None:
    expected = [b["line"] for b in blocks(BY_NAME[page]) if b["not_run"] is None]
    reports = page_reports[page]
    failures = [r for r in reports if not r["ok"]]
    assert not failures, "\n\n".join(f"{page}:{r['line']}\n{r['error']}" for r in failures)
    assert [r["line"] for r in reports] == expected


def test_skipped_blocks_are_rare_and_say_why() -> None:
    skipped = [b for page in PAGES for b in blocks(page) if b["not_run"] is not None]
    assert len(skipped) <= MAX_NOT_RUN, [f"{b['page']}:{b['line']}" for b in skipped]
    total = sum(1 for page in PAGES for _ in blocks(page))
    assert total >= 25  # the guide really is made of runnable code


def test_the_guide_has_every_chapter_and_every_link_resolves() -> None:
    index = (DOCS / "index.md").read_text()
    for page in GUIDE:
        if page.name != "index.md":
            assert f"({page.name})" in index, f"index.md does not link {page.name}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.(?:md|py))(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().exists(), f"{page.name} links {target}"


def test_api_reference_is_up_to_date() -> None:
    code = (
        "import sys; sys.path.insert(0, 'docs'); import _gen_api; "
        "sys.stdout.write(_gen_api.render())"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (DOCS / "api.md").read_text() == result.stdout, (
        "docs/api.md is out of date: run `python docs/_gen_api.py` and commit the result"
    )
