"""Shared cloud egress: allowlist ranges overlapping the clouds' published ranges are refused.

The addresses here are the clouds' own (taken from the stored snapshots), not documentation ranges:
what is tested is that those exact ranges are refused.
"""

import ipaddress
import json
import shutil
from datetime import UTC, datetime

import allowlist_ops
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from secure_endpoint.cloud_ranges import (
    AWS,
    AZURE,
    CLOUDS,
    DATA,
    GOOGLE,
    CloudIndex,
    load_document,
    snapshot_versions,
)
from secure_endpoint.settings import EndpointSettings, SettingsError

BASE = {"PROJECT_ID": "p", "MODEL_URI": "gs://demo-models/model.onnx", "IPV6": "true"}
NOW = datetime(2027, 3, 1, tzinfo=UTC)


def first_v4(cloud, widest=16, narrowest=24) -> ipaddress.IPv4Network:
    """A range of the cloud's snapshot of a size that passes the allowlist's own /8 checks."""
    return next(n for n in cloud.networks(load_document(cloud)) if n.version == 4 and widest <= n.prefixlen <= narrowest)


def ranges_setting(value: str) -> EndpointSettings:
    return EndpointSettings.from_env({**BASE, "ALLOWED_IP_RANGES": value})


def file_setting(tmp_path, *entries: dict) -> EndpointSettings:
    path = tmp_path / "allowlist.toml"
    path.write_text("".join(
        "[[entry]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items()) for entry in entries
    ))  # fmt: skip
    return EndpointSettings.from_env({**BASE, "ALLOWLIST_FILE": str(path)}, now=NOW)


def test_a_slash_8_of_google_and_aws_egress_is_refused():
    with pytest.raises(SettingsError) as caught:
        ranges_setting("34.0.0.0/8")
    message = str(caught.value)
    assert message.startswith("ALLOWED_IP_RANGES: expected ranges outside the public clouds' shared addresses")
    assert "Google Cloud's 34." in message and "AWS EC2's 34." in message
    assert "list it in ALLOWLIST_FILE with shared_cloud = true" in message


@pytest.mark.parametrize("cloud", CLOUDS, ids=[c.name for c in CLOUDS])
def test_each_clouds_range_is_refused_naming_the_cloud_and_the_range(cloud):
    network = first_v4(cloud)
    with pytest.raises(SettingsError) as caught:
        ranges_setting(str(network))
    assert f"which overlaps {cloud.name}'s {network}: every customer of {cloud.name}" in str(caught.value)


@pytest.mark.parametrize("cloud", CLOUDS, ids=[c.name for c in CLOUDS])
def test_a_range_inside_a_clouds_wider_than_the_own_nat_size_is_refused(cloud):
    network = first_v4(cloud)
    inside = next(network.subnets(new_prefix=27))
    with pytest.raises(SettingsError, match=f"got '{inside}', which overlaps {cloud.name}'s {network}"):
        ranges_setting(str(inside))


@pytest.mark.parametrize("prefix", [32, 30, 28])
def test_a_teams_own_nat_addresses_pass_without_a_flag(prefix, tmp_path):
    network = next(first_v4(GOOGLE).subnets(new_prefix=prefix))
    assert ranges_setting(str(network)).allowed_ranges == (network,)
    entry = {"range": str(network), "owner": "data team", "reason": "Cloud NAT addresses we reserved"}
    assert file_setting(tmp_path, entry).allowed_ranges == (network,)


def test_an_ipv6_address_of_ones_own_vm_passes_and_a_cloud_block_does_not():
    block = next(n for n in AWS.networks(load_document(AWS)) if n.version == 6 and 16 <= n.prefixlen <= 64)
    assert ranges_setting(str(next(block.subnets(new_prefix=96)))).allowed_ranges
    with pytest.raises(SettingsError, match=f"AWS EC2's {block}"):
        ranges_setting(str(block))


def test_the_file_refuses_an_overlap_naming_entry_owner_cloud_and_range(tmp_path):
    network = first_v4(AZURE)
    with pytest.raises(SettingsError) as caught:
        file_setting(tmp_path, {"range": "203.0.113.0/24", "owner": "a", "reason": "r"},
                     {"range": str(network), "owner": "partner", "reason": "their VMs"})  # fmt: skip
    message = str(caught.value)
    assert "entry 2 (owner 'partner'): expected ranges outside" in message and f"Azure's {network}" in message
    assert "shared_cloud = true and shared_cloud_reason" in message


def test_shared_cloud_with_a_reason_lets_the_range_in(tmp_path):
    network = first_v4(GOOGLE)
    entry = {"range": str(network), "owner": "partner", "reason": "their batch jobs",
             "shared_cloud": True, "shared_cloud_reason": "mutual TLS checks the client past Cloud Armor"}  # fmt: skip
    read = file_setting(tmp_path, entry, {"range": str(next(network.subnets(new_prefix=32))), "owner": "b", "reason": "r"})
    assert read.allowed_ranges == (network,)
    assert read.allowlist_entries[0].shared_cloud_reason.startswith("mutual TLS")


def test_narrow_entries_that_fold_into_a_wide_cloud_range_are_refused(tmp_path):
    quarters = list(first_v4(GOOGLE).subnets(new_prefix=28))[:2]
    entries = [{"range": str(q), "owner": f"team {i}", "reason": "NAT"} for i, q in enumerate(quarters)]
    with pytest.raises(SettingsError) as caught:
        file_setting(tmp_path, *entries)
    folded = ipaddress.collapse_addresses(quarters)
    assert f"entry 1 ({quarters[0]}), entry 2 ({quarters[1]}) fold into {next(folded)}" in str(caught.value)


def test_documentation_ranges_overlap_no_cloud():
    index = CloudIndex((c.name, n) for c in CLOUDS for n in c.networks(load_document(c)))
    for text in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"):
        assert index.overlaps(ipaddress.ip_network(text)) == []


ROWS = [("A", ipaddress.ip_network(t)) for t in ("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "172.16.0.0/12", "10.200.0.0/30")]


@hypothesis_settings(max_examples=500, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(4, 32))
def test_the_interval_search_finds_exactly_what_a_scan_finds(value, length):
    network = ipaddress.IPv4Network((value >> (32 - length) << (32 - length), length))
    rows = ROWS + [("B", ipaddress.ip_network("10.1.2.128/25"))]
    index = CloudIndex(rows)
    scanned = {(cloud, n) for cloud, n in rows if n.overlaps(network)}
    assert {(o.cloud, o.network) for o in index.overlaps(network)} == scanned


def test_each_snapshot_keeps_its_version_field_and_its_source():
    versions = snapshot_versions()
    for cloud in CLOUDS:
        document = load_document(cloud)
        record = versions[cloud.file]
        assert record["version"] == {key: document[key] for key in cloud.version_fields}
        assert record["copied_from"].startswith("https://github.com/") and record["ranges"] > 100
    assert {p["service"] for p in load_document(AWS)["prefixes"]} == {"EC2"}
    assert [v["name"] for v in load_document(AZURE)["values"]] == ["AzureCloud"]


def published(cloud) -> dict:
    """A file as its cloud publishes it: the snapshot, plus rows the trim must drop."""
    document = load_document(cloud)
    if cloud is AWS:
        document["prefixes"].append({"ip_prefix": "198.51.100.0/24", "region": "GLOBAL", "service": "AMAZON"})
        document["syncToken"] = "1900000000"
    if cloud is AZURE:
        document["values"].append({"name": "Storage", "id": "Storage", "properties": {"addressPrefixes": ["192.0.2.0/24"]}})
        document["changeNumber"] = 999
    if cloud is GOOGLE:
        document["syncToken"] = "1900000000000"
    return document


@pytest.fixture
def data_copy(tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(DATA, copy)
    return copy


def test_refresh_downloads_trims_and_records_each_file(httpserver, data_copy, tmp_path, capsys):
    for cloud in (GOOGLE, AWS):
        httpserver.expect_request(f"/{cloud.file}").respond_with_json(published(cloud))
    azure = tmp_path / "ServiceTags_Public_20270301.json"
    azure.write_text(json.dumps(published(AZURE)))
    urls = {cloud.name: httpserver.url_for(f"/{cloud.file}") for cloud in (GOOGLE, AWS)}

    assert allowlist_ops.refresh_cloud_ranges(azure, urls=urls, data=data_copy, now=NOW) == 0

    versions = snapshot_versions(data_copy)
    assert versions[AWS.file]["version"]["syncToken"] == "1900000000"
    assert versions[AWS.file]["copied_from"] == urls[AWS.name] and versions[AWS.file]["fetched"] == "2027-03-01T00:00:00+00:00"
    assert versions[AZURE.file]["version"]["changeNumber"] == 999 and versions[AZURE.file]["copied_from"] == str(azure)
    assert "AMAZON" not in (data_copy / AWS.file).read_text()
    assert [v["name"] for v in load_document(AZURE, data_copy)["values"]] == ["AzureCloud"]
    assert "AWS EC2: wrote aws-ec2.json" in capsys.readouterr().out
    assert not list(data_copy.glob(".*.tmp"))


def test_a_bad_download_keeps_the_old_snapshot_and_exits_2(httpserver, data_copy, capsys):
    before = (data_copy / AWS.file).read_bytes()
    httpserver.expect_request("/google").respond_with_json(published(GOOGLE))
    httpserver.expect_request("/aws").respond_with_data("<html>maintenance</html>")
    urls = {GOOGLE.name: httpserver.url_for("/google"), AWS.name: httpserver.url_for("/aws")}

    assert allowlist_ops.refresh_cloud_ranges(None, urls=urls, data=data_copy, now=NOW) == 2

    err = capsys.readouterr().err
    assert "failed: AWS EC2: expected AWS EC2's JSON from" in err and "Google Cloud: wrote google-cloud.json" in err
    assert "Azure: kept azure-cloud.json (no stable URL" in err
    assert (data_copy / AWS.file).read_bytes() == before
    assert snapshot_versions(data_copy)[GOOGLE.file]["version"]["syncToken"] == "1900000000000"
