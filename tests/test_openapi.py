"""GET /openapi.json: an OpenAPI 3.1 document generated from the loaded model, valid, naming the
model's real fields, and kept in step with the routes the service really answers."""

import json

import numpy as np
import onnxruntime
import pandas as pd
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from sklearn.ensemble import RandomForestClassifier

from function import open_inference as v2_routes
from function.app import Service
from function.decoders import v2 as v2_decoder
from function.decoders import seed as seed_decoder
from function.decoders.seed import REQUEST_SCHEMA, ROW_SCHEMA
from function.docs import ASSET_PATHS
from function.encoders import seed as seed_encoder
from function.encoders import v2 as v2_encoder
from function.encoders.seed import RESPONSE_SCHEMA
from function.openapi import ERROR_SCHEMA, OPENAPI_VERSION, Operation
from function.routes import DOCS_PATH, OPENAPI_PATH, PREDICT_PATHS, Route
from function.settings import Settings
from tests.own_models import COLORS, SHOP_FEATURES, shop_rows
from tests.test_own_models import post, records
from training.export import export_model
from training.train import CLASS_NAMES, FEATURE_NAMES

MODELS = ["iris", "shop", "price"]


@pytest.fixture(params=MODELS)
def served(request, make_client, model_file, shop_classifier, price_regressor):
    path = {"iris": model_file, "shop": shop_classifier.path, "price": price_regressor.path}[request.param]
    client = make_client(MODEL_URI=str(path))
    return request.param, client, client.get(OPENAPI_PATH).json()


def validator(document: dict, name: str) -> Draft202012Validator:
    """Validates against one of the document's component schemas, its references resolved."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def test_the_document_is_valid_openapi_3_1(served):
    _, client, document = served

    validate(document)
    assert document["openapi"] == OPENAPI_VERSION == "3.1.0"
    metadata = client.get("/").json()
    assert document["info"]["version"] == metadata["version"]
    assert document["info"]["title"].startswith(metadata["name"])


def test_every_route_the_service_answers_is_documented(served):
    _, client, document = served

    documented = {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}

    assert {(path, "POST") for path in PREDICT_PATHS} <= documented
    assert {("/", "GET"), (OPENAPI_PATH, "GET"), (DOCS_PATH, "GET"), ("/healthz", "GET"), ("/readyz", "GET")} <= documented
    metadata = client.get("/").json()
    for path, method in documented:
        path = path.format(name=metadata["name"], version=metadata["version"])
        assert client.request(method, path, content=b"{}", headers={"Content-Type": "application/json"}).status_code != 404
    assert not set(ASSET_PATHS) & set(document["paths"])


def test_the_request_schema_names_the_real_features_with_their_types(served):
    name, _, document = served
    row = document["components"]["schemas"][ROW_SCHEMA]

    if name == "iris":
        assert list(row["properties"]) == list(FEATURE_NAMES)
        assert {schema["type"] for schema in row["properties"].values()} == {"number"}
    else:
        assert list(row["properties"]) == list(SHOP_FEATURES)
        assert row["properties"]["color"] == {"type": "string", "enum": list(COLORS)}
        assert row["properties"]["size"]["type"] == "number"
    assert row["required"] == list(row["properties"])
    assert row["additionalProperties"] is False


def test_the_answer_schema_follows_the_task(served):
    name, _, document = served
    answer = document["components"]["schemas"][seed_encoder.ANSWER_SCHEMA]

    if name == "price":
        assert answer["required"] == ["prediction"]
    else:
        classes = list(CLASS_NAMES) if name == "iris" else ["no", "yes"]
        assert answer["required"] == [f"{c}_probability" for c in classes] + ["target"]
        assert answer["properties"]["target"]["enum"] == classes


def test_errors_are_documented_with_the_error_schema(served):
    _, _, document = served
    predict = document["paths"]["/predict"]["post"]

    assert document["components"]["schemas"][ERROR_SCHEMA]["required"] == ["error"]
    for status in ("400", "413", "415", "422", "503"):
        assert predict["responses"][status]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}


def test_the_examples_are_valid_requests_and_the_served_answers_fit_the_schema(served):
    _, client, document = served
    operation = document["paths"]["/predict"]["post"]
    requests = operation["requestBody"]["content"]["application/json"]["examples"]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]

    for example in requests.values():
        validator(document, REQUEST_SCHEMA).validate(example["value"])
        response = post(client, example["value"])
        assert response.status_code == 200, response.text
        validator(document, RESPONSE_SCHEMA).validate(response.json())
    assert answers["one row"]["value"] == post(client, requests["one row"]["value"]).json()


def test_the_schema_refuses_what_the_service_refuses(make_client, shop_classifier):
    client = make_client(MODEL_URI=str(shop_classifier.path))
    request = validator(client.get(OPENAPI_PATH).json(), REQUEST_SCHEMA)
    good = records(shop_rows(3, seed=3))

    assert request.is_valid({"instances": good})
    for bad in (
        {**good[0], "color": "purple"},
        {**good[0], "size": "big"},
        {k: v for k, v in good[0].items() if k != "weight"},
        {**good[0], "colour": "red"},
        {"instances": []},
        {"instances": [["red", 1.0]]},
    ):
        assert not request.is_valid(bad)
        assert 400 <= post(client, bad).status_code < 500


class WithAnotherDialect(Service):
    """The service as a new dialect extends it: one route, a decoder and an encoder of its own."""

    def _routes(self):
        endpoint = self.prediction_endpoint(
            lambda payload, signature, max_rows: seed_decoder.decode(payload, signature, max_rows),
            seed_encoder,
            json_content_type=False,
        )

        def describe(signature, settings: Settings) -> Operation:
            return Operation(
                summary="Predict under the model's own name",
                request=seed_decoder.request_schema(signature, settings.max_batch_rows),
                answer=seed_encoder.answer_schema(signature),
            )

        named = Route("/models/{name}/versions/{version}/predict", "POST", endpoint, describe, takes="rows by name")
        return [*super()._routes(), named]


@pytest.fixture
def extended(shop_classifier):
    from starlette.testclient import TestClient

    service = WithAnotherDialect(Settings(model_uri=str(shop_classifier.path)))

    async def app(scope, receive, send):
        from starlette.requests import Request

        response = await service.handle(Request(scope, receive))
        await response(scope, receive, send)

    # No `with`: the bare handler has no lifespan to run.
    return TestClient(app), shop_classifier


def test_a_route_added_with_its_dialect_is_served_documented_and_hinted(extended):
    client, shop = extended
    row = records(shop_rows(1, seed=4))[0]
    path = f"/models/shop/versions/{shop.version}/predict"

    answered = client.post(path, content=json.dumps(row).encode())
    document = client.get(OPENAPI_PATH).json()
    hint = client.post("/predict", json={"inputs": [row]}).json()["error"]

    assert answered.status_code == 200
    assert answered.json() == client.post("/predict", json=row).json()
    validate(document)
    parameters = document["paths"]["/models/{name}/versions/{version}/predict"]["post"]["parameters"]
    assert [(p["name"], p["schema"]["enum"]) for p in parameters] == [("name", ["shop"]), ("version", [shop.version])]
    assert f"or rows by name to POST /models/shop/versions/{shop.version}/predict" in hint
    assert "/models/{name}/versions/{version}/predict" in [r["path"] for r in client.get("/").json()["how_to_call"]["routes"]]


@pytest.mark.parametrize(
    "path, words",
    [
        ("/models/iris/versions/{version}/predict", "expected model name 'shop', got 'iris'"),
        ("/models/shop/versions/0000/predict", "expected model version"),
        ("/models/shop/versions/{version}/predict/extra", "expected one of the paths"),
        ("/models//versions/{version}/predict", "expected one of the paths"),
    ],
)
def test_a_route_naming_another_model_is_a_404(extended, path, words):
    client, shop = extended

    response = client.post(path.format(version=shop.version), json=records(shop_rows(1, seed=4))[0])

    assert response.status_code == 404
    assert words in response.json()["error"]


def test_the_v2_routes_are_documented_with_the_models_real_tensors(served):
    name, client, document = served
    metadata = client.get("/").json()
    infer = document["paths"][v2_routes.INFER_PATHS[0]]["post"]
    tensors = document["components"]["schemas"][v2_decoder.REQUEST_SCHEMA]["properties"]["inputs"]["items"]["oneOf"]

    documented = {(path, method.upper()) for path, operations in document["paths"].items() for method in operations}
    assert {(path, "POST") for path in v2_routes.INFER_PATHS} <= documented
    assert {(path, "GET") for path in (*v2_routes.MODEL_PATHS, *v2_routes.MODEL_READY_PATHS)} <= documented
    assert {(path, "GET") for path in (v2_routes.SERVER_PATH, v2_routes.LIVE_PATH, v2_routes.READY_PATH)} <= documented
    assert [p["schema"]["enum"] for p in infer["parameters"]] == [[metadata["name"]]]
    described = {t["properties"]["name"]["const"]: t["properties"]["datatype"]["enum"] for t in tensors}
    if name == "iris":
        assert described == {feature: list(v2_decoder.NUMERIC_DATATYPES) for feature in FEATURE_NAMES}
    else:
        assert described == {"color": ["BYTES"], "size": list(v2_decoder.NUMERIC_DATATYPES), "weight": list(v2_decoder.NUMERIC_DATATYPES)}
    model = document["paths"][v2_routes.MODEL_PATHS[0]]["get"]["responses"]["200"]["content"]["application/json"]
    path = v2_routes.MODEL_PATHS[0].format(name=metadata["name"])
    assert model["examples"]["this model"]["value"] == client.get(path).json()


def test_the_v2_examples_are_valid_requests_and_the_served_answers_fit_the_schema(served):
    _, client, document = served
    metadata = client.get("/").json()
    operation = document["paths"][v2_routes.INFER_PATHS[0]]["post"]
    requests = operation["requestBody"]["content"]["application/json"]["examples"]
    answers = operation["responses"]["200"]["content"]["application/json"]["examples"]
    path = v2_routes.INFER_PATHS[0].format(name=metadata["name"])

    for example in requests.values():
        validator(document, v2_decoder.REQUEST_SCHEMA).validate(example["value"])
        response = client.post(path, json=example["value"])
        assert response.status_code == 200, response.text
        validator(document, v2_encoder.RESPONSE_SCHEMA).validate(response.json())
    assert answers["one row"]["value"] == client.post(path, json=requests["one row"]["value"]).json()


def test_the_v2_schema_refuses_what_the_service_refuses(make_client, shop_classifier):
    client = make_client(MODEL_URI=str(shop_classifier.path))
    document = client.get(OPENAPI_PATH).json()
    request = validator(document, v2_decoder.REQUEST_SCHEMA)
    good = document["paths"][v2_routes.INFER_PATHS[0]]["post"]["requestBody"]["content"]["application/json"]["examples"]["two rows"]["value"]

    def changed(index, **changes):
        inputs = [dict(tensor) for tensor in good["inputs"]]
        inputs[index].update(changes)
        return {"inputs": inputs}

    assert request.is_valid(good)
    for bad in (
        changed(0, data=["purple", "red"]),
        changed(0, datatype="FP32"),
        changed(1, datatype="BYTES"),
        changed(1, shape=[2, 2]),
        changed(2, data=["heavy", 1.0]),
        {"inputs": good["inputs"][1:]},
        {**good, "outputs": [{"name": "scores"}]},
        {**good, "instances": []},
    ):
        assert not request.is_valid(bad)
        response = client.post(v2_routes.INFER_PATHS[0].format(name="shop"), json=bad)
        assert 400 <= response.status_code < 500, bad


@pytest.fixture(scope="module")
def forest_of_twenty(tmp_path_factory):
    """A float32 forest of 20 trees: many of its rows sum to 1.0000001 in the graph, and the
    complement of that to -1.2e-7."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    labels = np.where(frame["a"] + frame["b"] > 0, "yes", "no")
    estimator = RandomForestClassifier(n_estimators=20, random_state=0).fit(frame, labels)
    path = tmp_path_factory.mktemp("forest") / "forest.onnx"
    export_model(estimator, frame, path, name="forest")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (raw,) = session.run(["probabilities"], {"input": frame.to_numpy(np.float32)})
    outside = frame[((raw < 0) | (raw > 1)).any(axis=1)]
    assert len(outside) >= 10
    return path, estimator, outside.head(10)


def test_probabilities_rounded_outside_zero_and_one_are_served_within_the_schema(make_client, forest_of_twenty):
    path, estimator, rows = forest_of_twenty
    client = make_client(MODEL_URI=str(path))
    document = client.get(OPENAPI_PATH).json()
    answer_schema = validator(document, RESPONSE_SCHEMA)
    named = records(rows)
    infer = v2_routes.INFER_PATHS[0].format(name="forest")
    tensors = [
        {"name": name, "datatype": "FP64", "shape": [len(rows)], "data": rows[name].tolist()}
        for name in rows.columns
    ]

    singles = [post(client, row) for row in named]
    batch = post(client, {"instances": named})
    v2 = client.post(infer, json={"inputs": tensors})

    for response in [*singles, batch, v2]:
        assert response.status_code == 200, response.text
    for response in [*singles, batch]:
        answer_schema.validate(response.json())
    probabilities = np.array(v2.json()["outputs"][1]["data"])
    assert v2.json()["outputs"][1]["name"] == "probabilities"
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    expected = estimator.predict_proba(rows)
    assert np.abs(probabilities.reshape(expected.shape) - expected).max() <= 1e-6
