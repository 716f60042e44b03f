"""Small process helpers shared by the servers the driver starts: ports, readiness, tools."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

__all__ = ["ensure_tool", "free_port", "stop_process", "wait_for_port"]


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`.

    Raises:
        RuntimeError: if `proc` exits first or nothing listens within `timeout`.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:g} s")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate `proc` (and only it), killing it if it ignores SIGTERM for `grace` s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ensure_tool(name: str, apt_package: str) -> str:
    """Return the path of `name`, installing `apt_package` with apt-get if it is missing.

    The install is tried once as is and, if it fails, again after ``apt-get update``
    (a fresh container often has empty package lists).

    Raises:
        RuntimeError: naming the tool if it still is not on PATH afterwards.
    """
    path = shutil.which(name)
    if path:
        return path
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{name} is not on PATH and apt-get is not available to install it")
    print(f"  installing {apt_package} with apt-get ...", flush=True)
    install = [apt, "install", "-y", "-q", apt_package]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if subprocess.run(install, check=False, **quiet).returncode != 0:  # type: ignore[call-overload]
        subprocess.run([apt, "update", "-q"], check=False, **quiet)  # type: ignore[call-overload]
        subprocess.run(install, check=False, **quiet)  # type: ignore[call-overload]
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not path:
        raise RuntimeError(f"could not install {apt_package} to get {name}")
    return path
