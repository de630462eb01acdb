"""The request `make run` prints for the model it serves: built from the model's own metadata,
and answered 200 by the service it started."""

import json
import shlex
import subprocess

import pytest

from function.curl_example import curl_line
from function.routes import PREDICT_PATHS
from tests.helpers import ROOT, free_port, serve
from tests.own_models import shop_rows

MODELS = ["model_file", "shop_classifier", "zone_classifier", "price_regressor"]


def model_path(request, name: str) -> str:
    model = request.getfixturevalue(name)
    return str(getattr(model, "path", model))


def body_of(line: str) -> dict:
    words = shlex.split(line)
    return json.loads(words[words.index("-d") + 1])


def test_a_model_with_an_example_row_is_called_with_that_row(shop_classifier):
    line = curl_line(str(shop_classifier.path), 5000)

    assert line.startswith(f"curl -X POST http://localhost:5000{PREDICT_PATHS[-1]} -H 'Content-Type: application/json' -d ")
    first = shop_rows(120, seed=0).iloc[0]  # the sample's first row, as the export stored it
    assert body_of(line) == {name: (value.item() if hasattr(value, "item") else value) for name, value in first.items()}


def test_a_model_without_one_is_called_with_its_signature(zone_classifier, model_file):
    zones = body_of(curl_line(str(zone_classifier.path), 5000))
    iris = body_of(curl_line(str(model_file), 5000))

    assert zones == {"zone": 1.0, "area": 0.0}  # the first known code, and 0.0 for a number
    assert iris == {"sepal_length": 0.0, "sepal_width": 0.0, "petal_length": 0.0, "petal_width": 0.0}


def test_an_unreadable_model_gets_the_metadata_route_and_the_reason(tmp_path):
    result = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "function.curl_example", str(tmp_path / "absent.onnx"), "--port", "5001"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip

    assert result.stdout.startswith("curl http://localhost:5001/    (once the model loads: ")
    assert "absent.onnx" in result.stdout


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", MODELS)
def test_make_run_prints_a_curl_the_service_answers_with_200(request, tmp_path, name):
    path = model_path(request, name)
    port = free_port()
    command = ["make", "--no-print-directory", "run", f"PORT={port}", "HOST=127.0.0.1", f"MODEL_URI={path}"]

    with serve({}, tmp_path / "run.log", command=command, port=port) as server:
        printed = [line.strip() for line in server.logs().splitlines() if line.strip().startswith("curl ")]
        assert printed == [curl_line(path, port)], server.logs()
        words = [word.replace(f"localhost:{port}", f"127.0.0.1:{port}") for word in shlex.split(printed[0])]
        answer = subprocess.run([*words, "-s", "-w", "\n%{http_code}"], capture_output=True, text=True, timeout=30)

    body, status = answer.stdout.rsplit("\n", 1)
    assert status == "200", server.logs()
    assert {"target"} <= json.loads(body).keys() or {"prediction"} == json.loads(body).keys()
