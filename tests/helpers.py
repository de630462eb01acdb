"""Real processes for the tests: the service under functions-framework, and free ports."""

import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.processes import BIN, free_port, process

ROOT = Path(__file__).resolve().parents[1]
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
    url = f"http://127.0.0.1:{port}"
    with process(command, cwd=cwd, env=full_env, log=log_path) as proc:
        wait_until_up(url, proc, log_path)
        yield Server(url=url, process=proc, log_path=log_path)
