"""A real Open Inference Protocol V2 client, tritonclient's HTTP client, against the service as a
real process: health, metadata, and inference with JSON tensors for iris, a classifier pipeline
with a categorical column and a regressor; and what its binary defaults get."""

import ast
import re
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from function.decoders.v2 import JSON_TENSORS_ONLY
from function.encoders.v2 import LABEL_OUTPUT, PREDICTION_OUTPUT, PROBABILITIES_OUTPUT
from function.open_inference import SERVER_NAME
from tests.helpers import serve, wait_until_ready
from tests.own_models import SHOP_FEATURES, shop_rows
from tests.test_own_models import PROBABILITY_TOLERANCE, export_readme_churn, own_model_section, records
from tests.test_v2 import IRIS_ROWS
from training.train import CLASS_NAMES, FEATURE_NAMES


@pytest.fixture(scope="module")
def servers(tmp_path_factory, model_file, shop_classifier, price_regressor) -> Iterator[dict[str, str]]:
    """The service on its own port for each model: {model name: host:port}."""
    logs = tmp_path_factory.mktemp("v2-servers")
    paths = {"iris": model_file, "shop": shop_classifier.path, "price": price_regressor.path}
    with (
        serve({"MODEL_URI": str(paths["iris"])}, logs / "iris.log") as iris,
        serve({"MODEL_URI": str(paths["shop"])}, logs / "shop.log") as shop,
        serve({"MODEL_URI": str(paths["price"])}, logs / "price.log") as price,
    ):
        urls = {"iris": iris.url, "shop": shop.url, "price": price.url}
        for url in urls.values():
            wait_until_ready(lambda path, url=url: requests.get(url + path, timeout=10))
        yield urls


def client_for(servers, name) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=servers[name].removeprefix("http://"))


def json_input(name, array, datatype) -> triton.InferInput:
    tensor = triton.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=False)
    return tensor


def json_outputs(*names) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(name, binary_data=False) for name in names]


def shop_inputs(frame) -> list[triton.InferInput]:
    return [
        json_input("color", frame["color"].to_numpy(dtype=object), "BYTES"),
        json_input("size", frame["size"].to_numpy(dtype=np.float32), "FP32"),
        json_input("weight", frame["weight"].to_numpy(dtype=np.float32), "FP32"),
    ]


def iris_inputs(rows) -> list[triton.InferInput]:
    columns = np.array(rows, dtype=np.float64).T
    return [json_input(name, column.reshape(-1, 1), "FP64") for name, column in zip(FEATURE_NAMES, columns)]


def test_health_and_metadata_through_the_client(servers):
    client = client_for(servers, "iris")
    version = requests.get(servers["iris"] + "/", timeout=10).json()["version"]

    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", version)
    assert not client.is_model_ready("resnet")
    assert client.get_server_metadata()["name"] == SERVER_NAME
    metadata = client.get_model_metadata("iris", version)
    assert metadata["versions"] == [version]
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [(name, "FP64") for name in FEATURE_NAMES]
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("resnet")
    assert raised.value.status() == "404"
    assert "expected model name 'iris', got 'resnet'" in raised.value.message()


def test_iris_through_the_client_answers_as_the_seed_route_and_scikit_learn(servers, trained):
    client = client_for(servers, "iris")

    result = client.infer(
        "iris", iris_inputs(IRIS_ROWS), outputs=json_outputs(LABEL_OUTPUT, PROBABILITIES_OUTPUT), request_id="r1"
    )
    seed = requests.post(servers["iris"] + "/predict", json={"instances": IRIS_ROWS}, timeout=10).json()

    probabilities = result.as_numpy(PROBABILITIES_OUTPUT)
    assert result.get_response()["id"] == "r1"
    assert probabilities.dtype == np.float64
    assert probabilities.tolist() == [[p[f"{c}_probability"] for c in CLASS_NAMES] for p in seed["predictions"]]
    np.testing.assert_allclose(probabilities, trained.model.predict_proba(IRIS_ROWS), atol=1e-12)
    labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy(LABEL_OUTPUT)]
    assert labels == [CLASS_NAMES[i] for i in trained.model.predict(IRIS_ROWS)]


def test_a_categorical_pipeline_through_the_client_answers_as_scikit_learn(servers, shop_classifier):
    client = client_for(servers, "shop")
    frame = shop_rows(20, seed=21)

    result = client.infer("shop", shop_inputs(frame), outputs=json_outputs(PROBABILITIES_OUTPUT))
    seed = requests.post(servers["shop"] + "/predict", json={"instances": records(frame)}, timeout=10).json()

    probabilities = result.as_numpy(PROBABILITIES_OUTPUT)
    assert probabilities.dtype == np.float32
    assert result.as_numpy(LABEL_OUTPUT) is None
    expected = shop_classifier.estimator.predict_proba(frame)
    assert np.abs(probabilities - expected).max() <= PROBABILITY_TOLERANCE
    assert probabilities.tolist() == [[p["no_probability"], p["yes_probability"]] for p in seed["predictions"]]


def test_a_regressor_through_the_client_answers_as_scikit_learn(servers, price_regressor):
    client = client_for(servers, "price")
    frame = shop_rows(20, seed=22)

    result = client.infer("price", shop_inputs(frame), outputs=json_outputs(PREDICTION_OUTPUT))

    prediction = result.as_numpy(PREDICTION_OUTPUT)
    expected = price_regressor.estimator.predict(frame[list(SHOP_FEATURES)])
    assert prediction.dtype == np.float32
    assert prediction.shape == (20,)
    assert np.all(np.abs(prediction - expected) <= 1e-4 * np.maximum(1.0, np.abs(expected)))


def test_an_unknown_category_through_the_client_is_a_422(servers):
    frame = shop_rows(2, seed=23)
    frame.loc[1, "color"] = "purple"

    with pytest.raises(InferenceServerException) as raised:
        client_for(servers, "shop").infer("shop", shop_inputs(frame), outputs=json_outputs(LABEL_OUTPUT))

    assert raised.value.status() == "422"
    assert raised.value.message().startswith("input 'color' data[1]: expected one of the categories")


@pytest.mark.parametrize(
    "case, words",
    [
        # set_data_from_numpy's default: the body is a JSON header followed by raw tensors.
        ("binary inputs", "got binary tensors (Inference-Header-Content-Length"),
        # No outputs named: tritonclient asks for every output in binary.
        ("no outputs named", 'got parameters {"binary_data_output": true}'),
        # InferRequestedOutput's default.
        ("binary output named", 'outputs[0]: expected a JSON output, got parameters {"binary_data": true}'),
    ],
)
def test_the_clients_binary_defaults_get_a_400_saying_how_to_ask_for_json(servers, case, words):
    client = client_for(servers, "iris")
    column = np.array([[5.1]])
    if case == "binary inputs":
        inputs = []
        for name in FEATURE_NAMES:
            tensor = triton.InferInput(name, [1, 1], "FP64")
            tensor.set_data_from_numpy(column)
            inputs.append(tensor)
        outputs = json_outputs(LABEL_OUTPUT)
    else:
        inputs = [json_input(name, column, "FP64") for name in FEATURE_NAMES]
        outputs = [triton.InferRequestedOutput(LABEL_OUTPUT)] if case == "binary output named" else None

    with pytest.raises(InferenceServerException) as raised:
        client.infer("iris", inputs, outputs=outputs)

    assert raised.value.status() == "400"
    assert words in raised.value.message()
    assert JSON_TENSORS_ONLY in raised.value.message()


def test_the_own_model_page_s_tritonclient_snippet_prints_what_it_shows(tmp_path):
    section = own_model_section()
    _, snippet = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[:2]
    (printed,) = re.findall(r"result = client.infer.*?```\n\n```text\n(.*?)```", section, re.DOTALL)
    churn = export_readme_churn(section, tmp_path)

    with serve({"MODEL_URI": str(churn)}, tmp_path / "server.log") as server:
        snippet = snippet.replace("localhost:5000", server.url.removeprefix("http://"))
        output = subprocess.run(
            [sys.executable, "-c", snippet], capture_output=True, text=True, check=True, timeout=60
        ).stdout

    got = [ast.literal_eval(line) for line in output.splitlines()]
    shown = [ast.literal_eval(line) for line in printed.splitlines()]
    assert got[0] == shown[0]
    np.testing.assert_allclose(got[1], shown[1], rtol=0, atol=1e-6)
