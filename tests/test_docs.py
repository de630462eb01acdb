"""GET /docs: Swagger UI from the pinned package, served by the service itself, and opened in a
real headless Chromium against a real service process."""

import re
import shutil
import subprocess

import pytest

from function.docs import ASSET_PATHS, CONTENT_SECURITY_POLICY, INIT_ASSET
from function.routes import DOCS_PATH, OPENAPI_PATH, PREDICT_PATHS
from tests.helpers import serve
from tests.own_models import COLORS, SHOP_FEATURES

CHROMIUM = "chromium"  # Debian's package, installed by `make test` (debian-deps)


def test_the_page_loads_only_from_the_service(client):
    response = client.get(DOCS_PATH)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", response.text)
    references = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    # Every file of the page is referenced, so an empty list cannot pass for a clean one.
    assert {"/" + reference for reference in references} == set(ASSET_PATHS)
    for reference in references:
        assert client.get("/" + reference).status_code == 200


@pytest.mark.parametrize("path", sorted(ASSET_PATHS))
def test_each_file_of_the_page_is_served_with_its_media_type(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in {"text/css", "text/javascript", "image/png"}
    assert int(response.headers["content-length"]) == len(response.content) > 0
    assert "max-age" in response.headers["Cache-Control"]


def test_the_page_asks_for_the_generated_document(client):
    script = client.get(f"{DOCS_PATH}/{INIT_ASSET}").text

    assert f'url: "{OPENAPI_PATH.lstrip("/")}"' in script


@pytest.mark.parametrize("path", ["/docs/", "/docs/swagger-ui.js.map", "/docs/../main.py", "/docs/index.html", "/docs/swagger-ui-bundle.js.map"])
def test_nothing_else_of_the_package_or_the_disk_is_served(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert "expected one of the paths" in response.json()["error"]


def test_the_page_needs_no_model(make_client, tmp_path):
    client = make_client(MODEL_URI=str(tmp_path / "absent.onnx"))

    assert client.get(DOCS_PATH).status_code == 200
    assert client.get(OPENAPI_PATH).status_code == 503


@pytest.mark.timeout(180)
def test_a_browser_renders_the_routes_and_the_model_s_fields(shop_classifier, tmp_path):
    assert shutil.which(CHROMIUM), "chromium is missing: `make debian-deps` installs it"
    with serve({"MODEL_URI": str(shop_classifier.path)}, tmp_path / "service.log") as server:
        result = subprocess.run(
            [
                CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
                "--dump-dom", f"{server.url}{DOCS_PATH}",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        requested = server.logs()

    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {*PREDICT_PATHS, "/", OPENAPI_PATH, DOCS_PATH, "/healthz", "/readyz"} <= rendered
    assert "shop (classification)" in dom
    for name in SHOP_FEATURES:
        assert f"&quot;{name}&quot;" in dom or f'"{name}"' in dom
    for colour in COLORS:
        assert colour in dom
    assert "model loaded from" in requested  # the page fetched the generated document
