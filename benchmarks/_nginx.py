"""nginx as the static OpenAI-shaped endpoint: config generation, start and stop.

nginx serves a fixed chat completion for ``POST /v1/chat/completions`` and a fixed
500-chunk SSE body for ``POST /stream/v1/chat/completions``, so a client whose
``base_url`` is ``http://127.0.0.1:PORT/stream/v1`` streams. nginx refuses POST on a
static file with 405; ``error_page 405 =200 $uri`` turns that refusal into the file
itself with status 200, which is the whole trick. One worker keeps the server on one
core, leaving the other to the contender on a two-core machine.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs

from benchmarks._bodies import chat_completion_body, sse_stream_body
from benchmarks._procs import ensure_tool, free_port, stop_process, wait_for_port

__all__ = ["Nginx", "nginx_config", "open_nginx", "write_site"]

COMPLETION_PATH = "/v1/chat/completions"
STREAM_PATH = "/stream/v1/chat/completions"


@attrs.frozen
class Nginx:
    """A running nginx: where to point a client."""

    port: int

    @property
    def base_url(self) -> str:
        """``base_url`` for non-streaming requests (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def stream_base_url(self) -> str:
        """``base_url`` whose chat completions path serves the static SSE body."""
        return f"http://127.0.0.1:{self.port}/stream/v1"


def nginx_config(*, prefix: Path, root: Path, port: int, run_as_root: bool) -> str:
    """The nginx.conf text for a benchmark server rooted at `root`, listening on `port`.

    Args:
        prefix: a writable directory for the pid file, error log and temp paths.
        root: the document root holding the two bodies (see `write_site`).
        port: the loopback port to listen on.
        run_as_root: when nginx runs as root its workers would switch to ``nobody``;
            keep them root so they can read a private temp dir.

    Raises:
        ValueError: if `port` is not a TCP port.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1..65535, got {port}")
    user = "user root;\n" if run_as_root else ""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / (kind + '_temp')};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
{temp}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 100000;
    keepalive_timeout 300;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {root};
        default_type application/json;
        # POST on a static file is a 405; serve the file itself instead.
        error_page 405 =200 $uri;
        location = {COMPLETION_PATH} {{
            default_type application/json;
        }}
        location = {STREAM_PATH} {{
            default_type text/event-stream;
        }}
    }}
}}
"""


def write_site(root: Path) -> None:
    """Write the static completion and SSE bodies under `root` at their URL paths."""
    for url_path, body in (
        (COMPLETION_PATH, chat_completion_body()),
        (STREAM_PATH, sse_stream_body()),
    ):
        target = root / url_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


@contextlib.contextmanager
def open_nginx() -> Iterator[Nginx]:
    """Install nginx if missing, start it on a free port, stop it on exit.

    Raises:
        RuntimeError: if nginx cannot be installed or does not start listening.
    """
    binary = ensure_tool("nginx", "nginx")
    with tempfile.TemporaryDirectory(prefix="trioclient-bench-nginx-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)
        root = prefix / "www"
        write_site(root)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            nginx_config(prefix=prefix, root=root, port=port, run_as_root=os.geteuid() == 0)
        )
        proc = subprocess.Popen(
            [binary, "-p", str(prefix), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            try:
                wait_for_port(port, proc)
            except RuntimeError as exc:
                stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"nginx did not start: {exc}\n{stderr}") from None
            yield Nginx(port)
        finally:
            stop_process(proc)
            if proc.stderr:
                proc.stderr.close()
