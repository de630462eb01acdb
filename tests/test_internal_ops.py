"""`make check-ip`, `make endpoint` and `make verify` on the private endpoint (EXPOSURE=internal)."""

import json

import ops
import pytest
from secure_endpoint.settings import EndpointSettings
from secure_endpoint.synthesized import record_settings, stack_file

from tests.infra import BASE_ENV
from tests.test_internal_edge import INTERNAL

INTERNAL_ENV = {**BASE_ENV, **INTERNAL}


@pytest.fixture
def internal_out(tmp_path, synth, monkeypatch):
    """A cdktf.out of the internal stack, as `make synth` leaves it."""
    for name, value in INTERNAL_ENV.items():
        monkeypatch.setenv(name, value)
    path = stack_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(synth(**INTERNAL).json))
    record_settings(tmp_path, EndpointSettings.from_env(INTERNAL_ENV))
    return tmp_path


def test_check_ip_reads_the_regional_policys_rules(internal_out, capsys):
    assert ops.main(["--out", str(internal_out), "check-ip", "10.10.0.7", "192.168.7.5"]) == 0
    out = capsys.readouterr().out
    assert "10.10.0.7    allow      rule 1000 (ALLOWED_IP_RANGES part 1 of 1)" in out
    assert "not evaluated: 3 expression rules" in out


def test_check_ip_denies_a_vpc_address_outside_the_list(internal_out, capsys):
    assert ops.main(["--out", str(internal_out), "check-ip", "10.10.1.7"]) == 1
    assert (
        "10.10.1.7  deny(403)  rule 2147483647 (default: deny everyone else)"
        in capsys.readouterr().out
    )
