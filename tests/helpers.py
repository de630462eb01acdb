"""Real processes for the tests: the service under functions-framework, and free ports."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FUNCTIONS_FRAMEWORK = str(BIN / "functions-framework")

SEED_REQUEST = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
SEED_SETOSA_PROBABILITY = 0.9768459539213016
# The seed's own curl, verbatim but for the host.
SEED_CURL = [
    "curl", "-s", "-X", "POST", "http://localhost:{port}/inference/",
    "-H", "Content-Type: application/json",
    "-d", '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}',
]  # fmt: skip

# Variables the service reads; cleared around each test so the machine's own cannot leak in.
SERVICE_VARIABLES = (
    "MODEL_URI",
    "MAX_BATCH_ROWS",
    "MODEL_LOAD_TIMEOUT",
    "STORAGE_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "PORT",
    "HOST",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def json_logs(self) -> list[dict]:
        entries = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                entries.append(json.loads(line))
        return entries


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not up after {timeout} s:\n{log_path.read_text(errors='replace')}")


@contextmanager
def serve(
    env: dict[str, str],
    log_path: Path,
    *,
    command: Sequence[str] | None = None,
    port: int | None = None,
    cwd: Path = ROOT,
) -> Iterator[Server]:
    """Runs the service as a real process (functions-framework by default) until the block ends."""
    port = port or free_port()
    command = list(command or [FUNCTIONS_FRAMEWORK, "--target=predict", "--host=127.0.0.1"])
    full_env = {
        **{k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES},
        "PORT": str(port),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **env,
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, log_path)
        yield Server(url=url, process=process, log_path=log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
