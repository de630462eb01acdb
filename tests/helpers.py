"""Real processes for the tests: the service under functions-framework, and free ports."""

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from bench.processes import BIN, free_port, process

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FUNCTIONS_FRAMEWORK = str(BIN / "functions-framework")
# The Dockerfile's CMD, with this environment's interpreter, on loopback.
SERVER_COMMAND = [str(BIN / "python"), "-m", "function.server", "--host=127.0.0.1"]

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
    "MODEL_MAX_BYTES",
    "PREDICTION_LOG_RATE",
    "MAX_BODY_BYTES",
    "BODY_READ_TIMEOUT",
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


def json_lines(text: str) -> list[dict]:
    """The service's structured log entries in captured output."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_until_ready(get: Callable[[str], object], limit: float = 90) -> None:
    """Polls GET /readyz through `get` until 200, sleeping as each 503's Retry-After asks."""
    deadline = time.monotonic() + limit
    while True:
        response = get("/readyz")
        if response.status_code == 200:
            return
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, f"not ready after {limit} s: {response.text}"
        time.sleep(min(float(response.headers.get("Retry-After", "1")), 5))


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
    """Runs the service as a real process (as the container's CMD by default) until the block ends."""
    port = port or free_port()
    command = list(command or SERVER_COMMAND)
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


@dataclass
class FakeStorage:
    """A local HTTP server answering Cloud Storage's JSON API as `answer(path_and_query)` says,
    for what the emulator cannot do: trickle bytes, even the status line and headers, or lie
    about an object's size."""

    url: str
    requests: list[str] = field(default_factory=list)
    hang_ups: int = 0  # answers cut short because the client closed the connection


Answer = tuple[int, dict[str, str], Callable[[Callable[[bytes], None]], None]]


@contextmanager
def fake_storage(
    answer: Callable[[str], Answer], *, header_pause: float = 0
) -> Iterator[FakeStorage]:
    """`answer(path)` -> (status, headers, write_body); write_body(write) sends the body.
    `header_pause`: seconds between the bytes of the status line and headers, sent one by one."""
    state = FakeStorage(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept-alive connections, as Cloud Storage's

        def do_GET(self):  # noqa: N802 (the standard library's name)
            state.requests.append(self.path)
            status, headers, write_body = answer(self.path)

            def write(data: bytes) -> None:
                self.wfile.write(data)
                self.wfile.flush()

            try:
                if header_pause:
                    head = f"{self.protocol_version} {status} {self.responses[status][0]}\r\n"
                    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                    for byte in f"{head}\r\n".encode("latin-1"):
                        write(bytes([byte]))
                        time.sleep(header_pause)
                else:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                write_body(write)
            except (BrokenPipeError, ConnectionResetError):
                state.hang_ups += 1  # the client gave up, as it should

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def doc_pages() -> dict[str, str]:
    """What a reader sees: README.md first, then every page of docs/, by path from the root."""
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    return {str(page.relative_to(ROOT)): page.read_text() for page in pages}

