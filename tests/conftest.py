import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import functions_framework
import pytest
from starlette.testclient import TestClient

from bench.processes import storage_emulator
from tests.helpers import ROOT, SERVICE_VARIABLES
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
    with storage_emulator(tmp_path_factory.mktemp("gcs") / "emulator.log") as url:
        yield url


@pytest.fixture
def gcs_bucket(gcs_emulator: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh bucket in the emulator; STORAGE_EMULATOR_HOST points there for this test."""
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return storage.Client().create_bucket(f"models-{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def synth():
    """`synth(**env)` -> Synthesized; the provider loads once per session, each settings once."""
    from secure_endpoint.settings import STACK_NAME, EndpointSettings
    from secure_endpoint.stack import SecureEndpointStack

    from cdktn import App, Testing
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


@pytest.fixture(scope="session")
def shop_classifier(tmp_path_factory: pytest.TempPathFactory):
    from tests.own_models import export_classifier

    return export_classifier(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="session")
def price_regressor(tmp_path_factory: pytest.TempPathFactory):
    from tests.own_models import export_regressor

    return export_regressor(tmp_path_factory.mktemp("price"))


@pytest.fixture(scope="session")
def zone_classifier(tmp_path_factory: pytest.TempPathFactory):
    from tests.own_models import export_zone_classifier

    return export_zone_classifier(tmp_path_factory.mktemp("zones"))
