import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import functions_framework
import pytest
import requests
from starlette.testclient import TestClient

from tests.helpers import BIN, ROOT, SERVICE_VARIABLES, free_port
from training.train import Trained, export, train, write_model


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVICE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # functions-framework writes these into os.environ; monkeypatch restores them afterwards.
    monkeypatch.setenv("FUNCTION_TARGET", "predict")
    monkeypatch.setenv("FUNCTION_SIGNATURE_TYPE", "http")


@pytest.fixture(scope="session")
def trained() -> Trained:
    return train()


@pytest.fixture(scope="session")
def model_bytes(trained: Trained) -> bytes:
    return export(trained)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory, trained: Trained, model_bytes: bytes) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    write_model(path, model_bytes, trained)
    return path


@pytest.fixture
def make_client(monkeypatch: pytest.MonkeyPatch, model_file: Path) -> Iterator[Callable[..., TestClient]]:
    """Builds the app through functions-framework, as `--target=predict` does, with `env` set."""
    clients: list[TestClient] = []

    def make(**env: str) -> TestClient:
        env.setdefault("MODEL_URI", str(model_file))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = functions_framework.create_app(target="predict", source=str(ROOT / "main.py"))
        client = TestClient(app, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real gcp-storage-emulator server on a free loopback port, for the whole session."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("gcs") / "emulator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(BIN / "gcp-storage-emulator"), "start", "--host=127.0.0.1", f"--port={port}", "--in-memory"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_emulator(url, process, log_path)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_emulator(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"emulator exited:\n{log_path.read_text()}")
        try:
            requests.get(f"{url}/storage/v1/b", timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"emulator not up:\n{log_path.read_text()}")


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh bucket in the emulator; STORAGE_EMULATOR_HOST points there for this test."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return storage.Client().create_bucket(f"models-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def synth():
    """`synth(**env)` -> Synthesized; the provider loads once per session, each settings once."""
    from cdktf import App, Testing

    from secure_endpoint.settings import EndpointSettings
    from secure_endpoint.settings import STACK_NAME
    from secure_endpoint.stack import SecureEndpointStack
    from tests.infra import BASE_ENV, Synthesized

    cache: dict[frozenset, Synthesized] = {}

    def run(**env: str) -> Synthesized:
        merged = {**BASE_ENV, **env}
        key = frozenset(merged.items())
        if key not in cache:
            settings = EndpointSettings.from_env(merged)
            stack = SecureEndpointStack(App(), STACK_NAME, settings=settings)
            cache[key] = Synthesized(Testing.synth(stack))
        return cache[key]

    return run
