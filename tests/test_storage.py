"""Reading the model's bytes from a local path: the size cap bounds what is read, not what is
reserved."""

import json
import os

import pytest

from function.errors import TOO_LARGE, ModelUnavailable
from function.storage import _CHUNK_BYTES, read_model_bytes
from tests.helpers import SEED_REQUEST

# Far more memory than the machine has: a read must not reserve the cap up front.
HUGE_CAP = 100_000_000_000
JSON = {"Content-Type": "application/json"}


def test_a_local_model_loads_under_a_cap_larger_than_memory(model_file):
    assert read_model_bytes(str(model_file), 30, HUGE_CAP) == model_file.read_bytes()


def test_the_service_serves_a_local_model_under_a_cap_larger_than_memory(make_client):
    client = make_client(MODEL_MAX_BYTES=str(HUGE_CAP))

    response = client.post("/inference/", content=json.dumps(SEED_REQUEST), headers=JSON)

    assert response.status_code == 200, response.text
    assert response.json()["target"] == "setosa"


@pytest.mark.parametrize("extra", [0, 1, _CHUNK_BYTES - 1])
def test_a_local_file_of_several_chunks_is_read_whole_up_to_the_cap(tmp_path, extra):
    data = os.urandom(3 * _CHUNK_BYTES + extra)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)

    assert read_model_bytes(str(path), 30, len(data)) == data
    with pytest.raises(ModelUnavailable, match=f"MODEL_MAX_BYTES={len(data) - 1} bytes") as raised:
        read_model_bytes(str(path), 30, len(data) - 1)
    assert raised.value.kind == TOO_LARGE


def test_a_local_model_loads_under_a_timeout_longer_than_any_clock_counts(model_file):
    assert read_model_bytes(str(model_file), 1e300, HUGE_CAP) == model_file.read_bytes()
