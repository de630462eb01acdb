"""EXPOSURE=internal and its settings: what each needs, refused together in one run, by name."""

import pytest
from secure_endpoint.settings import EndpointSettings, SettingsError

from tests.infra import BASE_ENV

INTERNAL = {
    "EXPOSURE": "internal", "NETWORK": "inference-vpc", "SUBNET": "inference-subnet",
    "ALLOWED_IP_RANGES": "10.10.0.0/24",
}  # fmt: skip


def refused(**env: str) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, **env})
    return list(raised.value.lines)


def test_public_is_the_default_and_keeps_the_internal_settings_unset():
    settings = EndpointSettings.from_env(BASE_ENV)
    assert (settings.exposure, settings.internal) == ("public", False)
    assert (settings.network, settings.subnet, settings.proxy_subnet_cidr, settings.global_access) == (
        None, None, None, False,
    )  # fmt: skip


def test_internal_settings_are_read():
    settings = EndpointSettings.from_env(
        {**BASE_ENV, **INTERNAL, "PROXY_SUBNET_CIDR": "10.129.0.0/23", "GLOBAL_ACCESS": "true"}
    )
    assert settings.internal
    assert (settings.network, settings.subnet) == ("inference-vpc", "inference-subnet")
    assert (settings.proxy_subnet_cidr, settings.global_access) == ("10.129.0.0/23", True)


@pytest.mark.parametrize(
    "network, subnet",
    [
        (
            "projects/host-project/global/networks/shared",
            "projects/host-project/regions/asia-northeast1/subnetworks/ilb",
        ),
        (
            "https://www.googleapis.com/compute/v1/projects/host-project/global/networks/shared",
            "https://www.googleapis.com/compute/v1/projects/host-project/regions/asia-northeast1/subnetworks/ilb",
        ),
    ],
)
def test_network_and_subnet_may_be_self_links(network, subnet):
    settings = EndpointSettings.from_env(
        {**BASE_ENV, **INTERNAL, "NETWORK": network, "SUBNET": subnet}
    )
    assert (settings.network, settings.subnet) == (network, subnet)


def test_every_internal_problem_is_named_in_one_run():
    lines = refused(
        EXPOSURE="internal",
        ALLOWED_IP_RANGES="10.0.0.0/24",
        IPV6="true",
        PROXY_SUBNET_CIDR="10.129.0.0/27",
    )
    assert sorted(line.split(":")[0] for line in lines) == [
        "IPV6",
        "NETWORK",
        "PROXY_SUBNET_CIDR",
        "SUBNET",
    ]
    (ipv6,) = [line for line in lines if line.startswith("IPV6:")]
    assert "EXPOSURE=internal" in ipv6 and "IPv4 only" in ipv6
    (proxy,) = [line for line in lines if line.startswith("PROXY_SUBNET_CIDR:")]
    assert "/26" in proxy and "'10.129.0.0/27' (a /27)" in proxy


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("EXPOSURE", "private", "expected public or internal, got 'private'"),
        ("NETWORK", "Inference_VPC", "expected a VPC network's name"),
        ("NETWORK", "vpc${var.network}", "expected a VPC network's name"),
        ("SUBNET", "projects/p/global/networks/vpc", "expected a subnet's name"),
        (
            "SUBNET",
            "projects/p/regions/europe-west1/subnetworks/ilb",
            "expected a subnet in REGION asia-northeast1, got one in europe-west1",
        ),
        ("PROXY_SUBNET_CIDR", "10.129.0.1/23", "expected an IPv4 range"),
        ("PROXY_SUBNET_CIDR", "169.254.0.0/23", "overlapping 169.254.0.0/16 (Link Local)"),
        ("PROXY_SUBNET_CIDR", "fd00::/64", "expected an IPv4 range"),
        ("GLOBAL_ACCESS", "sometimes", "expected true or false"),
        ("PREVIOUS_DOMAIN", "old.example.com", "expected unset with EXPOSURE=internal"),
    ],
)
def test_bad_internal_settings_are_refused_by_name(name, value, words):
    env = {**INTERNAL, name: value}
    if name == "PREVIOUS_DOMAIN":
        env["DOMAIN"] = "api.example.com"
    lines = refused(**env)
    assert [line for line in lines if line.startswith(f"{name}: ") and words in line], lines


@pytest.mark.parametrize(
    "name, value",
    [
        ("NETWORK", "vpc"),
        ("SUBNET", "ilb"),
        ("PROXY_SUBNET_CIDR", "10.129.0.0/23"),
        ("GLOBAL_ACCESS", "true"),
    ],
)
def test_internal_settings_are_refused_in_public_mode(name, value):
    # A VPC named without EXPOSURE=internal would otherwise build a public load balancer.
    (line,) = refused(**{name: value})
    assert line.startswith(f"{name}: expected only with EXPOSURE=internal")


def test_a_private_range_is_still_refused_in_public_mode():
    (line,) = refused(ALLOWED_IP_RANGES="10.0.0.0/24")
    assert line.startswith("ALLOWED_IP_RANGES: expected public addresses")


def test_a_public_range_in_internal_mode_passes_with_a_warning_saying_why_unusual():
    settings = EndpointSettings.from_env(
        {**BASE_ENV, **INTERNAL, "ALLOWED_IP_RANGES": "10.0.0.0/24, 8.8.8.0/24"}
    )
    (warning,) = [w for w in settings.warnings() if w.startswith("ALLOWED_IP_RANGES")]
    assert "8.8.8.0/24 is a public range" in warning and "privately used public range" in warning
    quiet = EndpointSettings.from_env({**BASE_ENV, **INTERNAL})
    assert not [w for w in quiet.warnings() if w.startswith("ALLOWED_IP_RANGES")]


def test_plain_http_warning_in_internal_mode_speaks_of_the_vpc():
    settings = EndpointSettings.from_env({**BASE_ENV, **INTERNAL})
    (warning,) = [w for w in settings.warnings() if w.startswith("DOMAIN")]
    assert "across the VPC" in warning and "over the internet" not in warning
