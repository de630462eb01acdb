"""Real processes on loopback, shared by the benchmark and the tests: start, wait, always stop."""

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def process(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """Runs `command` with its output in `log` until the block ends, then stops it (kills if stuck)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def storage_emulator(log: Path, port: int | None = None, timeout: float = 30) -> Iterator[str]:
    """A gcp-storage-emulator server in memory on loopback; yields its URL once it answers."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"]
    with process(command, cwd=log.parent, env={"PATH": str(BIN)}, log=log) as proc:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {proc.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gcp-storage-emulator not up after {timeout} s:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield url
