"""CONCURRENCY and MAX_BODY_BYTES are checked together, at synth, against the service's memory."""

import pytest

from function import capacity
from function import settings as service_settings
from secure_endpoint.settings import (
    DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES_CEILING, SERVICE_MEMORY_MIB, EndpointSettings, SettingsError,
)  # fmt: skip
from tests.infra import BASE_ENV

MIB = 1024 * 1024


def test_the_infrastructure_knows_the_services_own_body_limits():
    assert DEFAULT_MAX_BODY_BYTES == service_settings.MAX_BODY_BYTES
    assert MAX_BODY_BYTES_CEILING == service_settings.MAX_BODY_BYTES_CEILING


def test_the_defaults_fit_the_service():
    settings = EndpointSettings.from_env(BASE_ENV)

    assert (settings.concurrency, settings.max_body_bytes) == (80, MIB)
    assert capacity.fits(80, MIB, SERVICE_MEMORY_MIB * MIB)


@pytest.mark.parametrize(
    ("concurrency", "max_body_bytes"),
    [("1000", None), ("250", None), ("80", str(2 * MIB)), ("1", str(32 * MIB))],
)
def test_a_combination_that_could_exceed_the_memory_is_refused_naming_both(concurrency, max_body_bytes):
    env = {**BASE_ENV, "CONCURRENCY": concurrency}
    if max_body_bytes:
        env["MAX_BODY_BYTES"] = max_body_bytes

    with pytest.raises(SettingsError) as refused:
        EndpointSettings.from_env(env)

    (line,) = refused.value.lines
    assert line.startswith(f"CONCURRENCY: with MAX_BODY_BYTES={max_body_bytes or MIB}, {concurrency} ")
    assert f"of the service's {SERVICE_MEMORY_MIB} MiB" in line and "lower CONCURRENCY or MAX_BODY_BYTES" in line


def test_a_smaller_body_limit_admits_more_requests_in_flight():
    settings = EndpointSettings.from_env({**BASE_ENV, "CONCURRENCY": "250", "MAX_BODY_BYTES": str(256 * 1024)})

    assert (settings.concurrency, settings.max_body_bytes) == (250, 256 * 1024)


def test_a_non_default_body_limit_reaches_the_service(synth):
    default = synth()
    smaller = synth(MAX_BODY_BYTES=str(256 * 1024))

    def env(synthesized):
        (service,) = synthesized.resources("google_cloud_run_v2_service").values()
        return {e["name"]: e["value"] for e in service["template"]["containers"][0]["env"]}

    assert "MAX_BODY_BYTES" not in env(default)
    assert env(smaller)["MAX_BODY_BYTES"] == str(256 * 1024)
