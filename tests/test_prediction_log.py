"""PREDICTION_LOG_RATE: that fraction of predictions logged as one structured entry with the rows,
the answers, and the model's name and version; the entry stays well under Cloud Logging's limit."""

import json

import pytest

from function.prediction_log import MAX_ENTRY_BYTES, MAX_STRING_CHARS, MESSAGE
from function.settings import MAX_BODY_BYTES
from tests.helpers import SEED_REQUEST, json_lines
from tests.own_models import SHOP_FEATURES, shop_rows
from tests.test_own_models import post, records, with_props

CLOUD_LOGGING_ENTRY_LIMIT = 256 * 1024


def predictions_logged(capsys) -> list[dict]:
    return [entry for entry in json_lines(capsys.readouterr().out) if entry["message"] == MESSAGE]


def test_no_prediction_is_logged_by_default(client, capsys):
    for _ in range(20):
        assert post(client, SEED_REQUEST).status_code == 200

    assert predictions_logged(capsys) == []


def test_a_rate_of_one_logs_every_prediction_with_rows_answers_name_and_version(make_client, shop_classifier, capsys):
    client = make_client(MODEL_URI=str(shop_classifier.path), PREDICTION_LOG_RATE="1")
    rows = records(shop_rows(3, seed=5))

    single = post(client, rows[0])
    batch = post(client, {"instances": [rows[1], [rows[2][name] for name in SHOP_FEATURES]]})

    first, second = predictions_logged(capsys)
    assert first["severity"] == "INFO"
    assert (first["model_name"], first["model_version"]) == ("shop", shop_classifier.version)
    assert first["route"] == "POST /predict"
    assert (first["rows"], first["rows_logged"]) == (1, 1)
    assert first["inputs"] == [rows[0]]
    assert first["answers"] == [single.json()]
    assert (second["rows"], second["rows_logged"]) == (2, 2)
    assert second["inputs"] == rows[1:]
    assert second["answers"] == batch.json()["predictions"]


def test_refused_requests_are_not_logged_as_predictions(make_client, capsys):
    client = make_client(PREDICTION_LOG_RATE="1")

    assert post(client, {**SEED_REQUEST, "sepal_length": "long"}).status_code == 400

    assert predictions_logged(capsys) == []


def test_a_fraction_logs_about_that_share(make_client, capsys):
    client = make_client(PREDICTION_LOG_RATE="0.5")

    for _ in range(200):
        post(client, SEED_REQUEST)

    # Binomial(200, 0.5): outside 50..150 with a probability below 1e-12.
    assert 50 <= len(predictions_logged(capsys)) <= 150


@pytest.mark.parametrize("value_chars", [8, 900])
def test_a_large_batch_is_cut_to_stay_well_under_the_entry_limit(make_client, tmp_path, price_regressor, capsys, value_chars):
    # The regressor ignores unknown colours; without its categories in the file, any string is a colour.
    data = with_props(price_regressor.path.read_bytes(), features=json.dumps(
        [{"name": "color", "type": "string"}, {"name": "size", "type": "number"}, {"name": "weight", "type": "number"}]
    ))  # fmt: skip
    path = tmp_path / "any-colour.onnx"
    path.write_bytes(data)
    client = make_client(MODEL_URI=str(path), PREDICTION_LOG_RATE="1")
    row = ["c" * value_chars, 10.0, 50.0]
    count = min(1000, (MAX_BODY_BYTES - 100) // (len(json.dumps(row)) + 2))

    response = post(client, {"instances": [row] * count})

    assert response.status_code == 200
    (entry,) = predictions_logged(capsys)
    size = len(json.dumps(entry))
    assert size < MAX_ENTRY_BYTES + 4096 < CLOUD_LOGGING_ENTRY_LIMIT // 2
    assert entry["rows"] == count
    assert 0 < entry["rows_logged"] < count
    assert len(entry["inputs"]) == len(entry["answers"]) == entry["rows_logged"]
    assert len(entry["inputs"][0]["color"]) == min(value_chars, MAX_STRING_CHARS)


def test_the_load_is_logged_with_the_model_s_name_and_version(make_client, price_regressor, capsys):
    client = make_client(MODEL_URI=str(price_regressor.path))

    client.get("/readyz")

    (load,) = [entry for entry in json_lines(capsys.readouterr().out) if entry["message"].startswith("model loaded")]
    assert (load["model_name"], load["model_version"], load["task"]) == ("price", price_regressor.version, "regression")
    assert load["model_uri"] == str(price_regressor.path)
