"""URL masks of serverless NEGs, parsed as the Compute API documents them."""

import pytest

from secure_endpoint.url_mask import UrlMaskError, parse, reaches


def test_the_compute_apis_own_example_parses_to_its_service_and_tag():
    assert parse("<tag>.domain.com/<service>", "foo1.domain.com/bar1") == {"tag": "foo1", "service": "bar1"}
    assert parse("<tag>.domain.com/<service>", "foo1.domain.com/bar2") == {"tag": "foo1", "service": "bar2"}


@pytest.mark.parametrize(
    "mask, url, expected",
    [
        ("example.com/<service>", "example.com/inference/v2/models", {"service": "inference"}),
        ("example.com/<service>", "other.example/inference", None),
        ("/<service>", "anything.example.net/inference", {"service": "inference"}),
        ("<service>.example.com", "INFERENCE.example.com/", {"service": "inference"}),
        ("<service>.example.com", "a.b.example.com/", None),
        ("example.com/api/<service>", "example.com/apis/inference", None),
    ],
)  # fmt: skip
def test_a_mask_matches_the_host_whole_and_the_path_from_its_start(mask, url, expected):
    assert parse(mask, url) == expected


@pytest.mark.parametrize(
    "mask, service, expected",
    [
        ("<service>.example.com", "inference", True),
        ("example.com/<service>", "inference-canary", True),
        ("<tag>-<service>.example.com", "inference-canary", True),  # split either way: counted as reaching
        ("<tag>.example.com", "inference", False),
        ("", "inference", False),
    ],
)  # fmt: skip
def test_a_mask_reaches_every_service_its_placeholder_can_name(mask, service, expected):
    assert reaches(mask, service) is expected


def test_a_placeholder_other_than_service_and_tag_is_not_a_mask():
    with pytest.raises(UrlMaskError, match="expected <service> and <tag> at most once each, got <version>"):
        parse("<version>.example.com", "v1.example.com")
