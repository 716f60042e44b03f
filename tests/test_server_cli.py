"""The server's command line and its pytest plugin, run as real subprocesses."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from trioclient.testing._cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--host",
        "--port",
        "--api-key",
        "--rpm",
        "--tpm",
        "--latency",
        "--tps",
        "--fault",
        "--answer-tokens",
        "--seed",
    ):
        assert option in out


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--fault", "nope"], "unknown fault 'nope'"),
        (["--fault", "http_500=2"], "must be in [0, 1]"),
        (["--latency", "uniform:3,1"], "a <= b"),
        (["--rpm", "0"], "positive integer"),
        (["--port", "99999"], "0..65535"),
        (["--fault", "http_500=0.8", "--fault", "http_503=0.5"], "more than 1"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code  # type: ignore[assignment]
    assert code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert len(err.strip().splitlines()) == 1


def test_parser_builds_the_config() -> None:
    from trioclient.testing._cli import _config_from

    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--rpm",
            "10",
            "--fault",
            "http_503=0.25",
            "--fault",
            "reset_mid_stream=0.5",
            "--latency",
            "lognormal:0.2,0.5",
            "--tps",
            "30",
            "--api-key",
            "sk-x",
        ]
    )
    config = _config_from(args)
    assert config.rpm == 10 and config.port == 0 and config.api_key == "sk-x"
    assert dict(config.faults) == {"http_503": 0.25, "reset_mid_stream": 0.5}
    assert str(config.ttft) == "lognormal:0.2,0.5"


def test_serves_until_ctrl_c_then_exits_0() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "trioclient.testing", "--port", "0", "--api-key", "sk-cli-key"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        text=True,
        # a child inherits an ignored SIGINT; make sure it gets the default
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:")
        base_url = line.split()[-1]
        response = httpx.post(
            base_url + "/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": "Bearer sk-cli-key"},
            timeout=10,
        )
        assert response.status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    assert err.strip() == "server stopped (Ctrl-C)"
    assert "sk-cli-key" not in out + err


def test_pytest_plugin_fixtures_work_in_a_fresh_pytest_run(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixture.py").write_text(
        textwrap.dedent(
            """
            import httpx

            async def test_default(trioclient_server):
                async with httpx.AsyncClient() as client:
                    r = await client.get(trioclient_server.base_url + "/models",
                                         headers={"authorization": "Bearer k"})
                assert r.status_code == 200

            async def test_factory(trioclient_server_factory):
                server = await trioclient_server_factory(rpm=1)
                async with httpx.AsyncClient() as client:
                    url = server.base_url + "/chat/completions"
                    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
                    auth = {"authorization": "Bearer k"}
                    codes = [(await client.post(url, json=body, headers=auth)).status_code
                             for _ in range(2)]
                assert codes == [200, 429]
            """
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            # Plugins named explicitly, none auto-loaded: the same run whether or not
            # trioclient is installed (installed, its pytest11 entry point would load
            # the plugin a second time under another name).
            "-p",
            "pytest_trio.plugin",
            "-p",
            "trioclient.testing._pytest_plugin",
            "-q",
            "-o",
            "trio_mode=true",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**ENV, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_plugin_module_imports_nothing_heavy() -> None:
    code = (
        "import sys; import trioclient.testing._pytest_plugin; "
        "print(sorted(m for m in sys.modules if m.startswith('trioclient.testing.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60
    )
    assert result.returncode == 0, result.stderr
    # the server (and with it h11) loads only when a fixture runs
    assert result.stdout.strip() == "['trioclient.testing._pytest_plugin']"


#: What the server may take from the rest of trioclient: helpers with no knowledge of
#: the OpenAI protocol. Models, the SSE decoder, the client and its transport are out:
#: the server is an independent reading of the API, so a test of one against the other
#: means something.
SERVER_MAY_IMPORT = {"trioclient._background"}


def test_the_server_shares_no_protocol_code_with_the_client() -> None:
    package = ROOT / "trioclient" / "testing"
    reached: dict[str, set[str]] = {}
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    names = [node.module or ""]
                elif node.level == 1:
                    continue  # a sibling inside trioclient.testing
                elif node.module:  # from .._x import y: level 2 is trioclient itself
                    names = [f"trioclient.{node.module}"]
                else:  # from .. import _x
                    names = [f"trioclient.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] == "trioclient" and not name.startswith("trioclient.testing"):
                    reached.setdefault(name, set()).add(path.name)
    assert set(reached) <= SERVER_MAY_IMPORT, reached
