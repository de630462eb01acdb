"""Memory under the worst bodies the limits allow, at the concurrency the service is deployed
with: the container's peak stays well under the Cloud Run instance's memory, and under the bound
`function.capacity` states. The server runs as the container runs it, on a real socket."""

import requests
from secure_endpoint.settings import DEFAULT_CONCURRENCY

from bench.memory import MIB, measure, worst_cases
from function import capacity
from function.settings import DEFAULT_MAX_BATCH_ROWS, MAX_BODY_BYTES
from tests.helpers import SEED_REQUEST, serve
from training.train import FEATURE_NAMES

# The instance's memory, as cdktf/secure_endpoint/serving.py declares it ("512Mi").
INSTANCE_MEMORY_MIB = 512
# The measured peak may use at most this share of it.
MARGIN = 0.75


def test_the_worst_bodies_at_full_concurrency_stay_well_under_the_instance_memory(tmp_path, model_file):
    with serve({"MODEL_URI": str(model_file)}, tmp_path / "server.log") as server:
        name = requests.get(f"{server.url}/", timeout=30).json()["name"]
        cases = worst_cases(MAX_BODY_BYTES, name, list(FEATURE_NAMES), ["label"], DEFAULT_MAX_BATCH_ROWS)
        figures = measure(server.url, server.process.pid, cases, DEFAULT_CONCURRENCY, seconds=5, scratch=tmp_path)
        still = requests.post(f"{server.url}/predict", json=SEED_REQUEST, timeout=30)

    print(f"memory at {DEFAULT_CONCURRENCY} connections, bodies of {MAX_BODY_BYTES} bytes: {figures}")
    assert figures["wrong"] == []
    assert still.status_code == 200
    peak = figures["after"]["peak"]
    assert peak < INSTANCE_MEMORY_MIB * MARGIN, figures
    assert peak * MIB <= capacity.worst_case_bytes(DEFAULT_CONCURRENCY, MAX_BODY_BYTES), figures


def test_the_deployed_defaults_fit_the_instance_and_an_excessive_combination_does_not():
    instance = INSTANCE_MEMORY_MIB * MIB

    assert capacity.fits(DEFAULT_CONCURRENCY, MAX_BODY_BYTES, instance)
    assert not capacity.fits(1000, 32 * MIB, instance)
    assert not capacity.fits(DEFAULT_CONCURRENCY, 8 * MIB, instance)


def test_the_bound_grows_with_concurrency_and_body_size():
    base = capacity.worst_case_bytes(80, MIB)

    assert capacity.worst_case_bytes(81, MIB) > base
    assert capacity.worst_case_bytes(80, MIB + 1) > base
    assert capacity.worst_case_bytes(80, MIB, model_bytes=10 * MIB) == base + 10 * MIB
