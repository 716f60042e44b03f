"""A real redis-server for tests: on a free loopback port, in a temporary directory,
persisting nothing, stopped (or killed) by the test.

Where redis-server is not installed the tests that need it skip, saying so, except
under CI (the ``CI`` environment variable set), where a missing server is a failure:
CI installs it, so its absence there means the tests silently stopped running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

REDIS_SERVER = shutil.which("redis-server")


def require_redis_server() -> str:
    if REDIS_SERVER is not None:
        return REDIS_SERVER
    message = "redis-server is not installed (Debian: apt-get install redis-server)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI must run the Redis tests")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; :meth:`start` again after :meth:`kill` reuses the port."""

    def __init__(self, password: str | None = None) -> None:
        self.binary = require_redis_server()
        self.password = password
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="trioclient-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        login = f":{self.password}@" if self.password else ""
        return f"redis://{login}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.directory,
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.directory
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start ({self.process.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                    if sock.recv(100):  # +PONG, or -NOAUTH with a password: up either way
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start within 20 s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the connected clients, as a crash would be."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def command(self, *args: str) -> bytes:
        """Run one command with a plain blocking socket (independent of our client)."""
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            if self.password:
                auth = self.password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(auth), auth))
                sock.recv(100)
            sock.sendall(b"".join(parts))
            return sock.recv(65536)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def running_redis(password: str | None = None) -> Iterator[RedisServer]:
    server = RedisServer(password)
    try:
        server.start()
        yield server
    finally:
        server.close()
