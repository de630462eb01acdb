"""The probes, alerts and dashboard ALERT_EMAIL adds: read from the synthesized graph."""

import base64
import json
import re

import pytest

from secure_endpoint.monitoring import LOAD_FAILURE_MESSAGE
from secure_endpoint.monitoring_plan import CHECKER_REGIONS, DENIED_STATUS, PROBE_PATH
from secure_endpoint.stack import SEED_REQUEST
from tests.helpers import json_lines
from tests.infra import is_reference

ALERTS = {"ALERT_EMAIL": "oncall@example.com"}
CANARY = {"CANARY_MODEL_URI": "gs://demo-models/canary.onnx", "CANARY_PERCENT": "10"}
SHAPES = {
    "http": ALERTS,
    "https": {**ALERTS, "DOMAIN": "api.example.com"},
    "https-ipv6-canary": {**ALERTS, "DOMAIN": "api.example.com", "IPV6": "true", **CANARY},
}
# Checkers per uptime-check region (Cloud Monitoring's uptime checks overview): USA has three.
CHECKERS = {"USA": 3, "USA_OREGON": 1, "USA_IOWA": 1, "USA_VIRGINIA": 1, "EUROPE": 1, "SOUTH_AMERICA": 1, "ASIA_PACIFIC": 1}


def policies(stack) -> dict[str, dict]:
    """Alert policies by display name, without the `inference: ` prefix."""
    return {p["display_name"].split(": ", 1)[1]: p for p in stack.resources("google_monitoring_alert_policy").values()}


def policy(stack, starting: str) -> dict:
    (found,) = [p for name, p in policies(stack).items() if name.startswith(starting)]
    return found


def threshold(stack, starting: str) -> dict:
    (condition,) = policy(stack, starting)["conditions"]
    return condition["condition_threshold"]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_probe_accepts_403_and_nothing_else(synth, shape):
    probes = synth(**SHAPES[shape]).resources("google_monitoring_uptime_check_config").values()

    assert probes
    for probe in probes:
        assert probe["http_check"]["accepted_response_status_codes"] == [{"status_value": DENIED_STATUS}]
        assert "STATUS_CLASS" not in json.dumps(probe)


@pytest.mark.parametrize("shape", SHAPES)
def test_probes_post_the_example_request_as_json_from_at_least_three_checkers(synth, shape):
    for probe in synth(**SHAPES[shape]).resources("google_monitoring_uptime_check_config").values():
        check = probe["http_check"]
        assert (check["request_method"], check["path"]) == ("POST", PROBE_PATH)
        assert json.loads(base64.b64decode(check["body"], validate=True)) == SEED_REQUEST
        assert (check["content_type"], check["custom_content_type"]) == ("USER_PROVIDED", "application/json")
        assert probe["selected_regions"] == list(CHECKER_REGIONS)
        assert sum(CHECKERS[region] for region in probe["selected_regions"]) >= 3
        assert probe["monitored_resource"]["type"] == "uptime_url"


def test_without_domain_one_probe_reaches_the_address_over_http(synth):
    stack = synth(**SHAPES["http"])
    (probe,) = stack.resources("google_monitoring_uptime_check_config").values()

    assert probe["monitored_resource"]["labels"]["host"] == stack.address("google_compute_global_address", "address")
    assert (probe["http_check"]["port"], probe["http_check"]["use_ssl"]) == (80, False)


def test_with_domain_the_name_and_the_address_are_probed_over_https(synth):
    """Port 80 only redirects there (no Cloud Armor on the redirect), so a probe of it would get 308."""
    stack = synth(**SHAPES["https"])
    hosts = {
        p["monitored_resource"]["labels"]["host"]: p["http_check"]
        for p in stack.resources("google_monitoring_uptime_check_config").values()
    }
    address = stack.address("google_compute_global_address", "address")

    assert hosts.keys() == {"api.example.com", address}
    assert (hosts["api.example.com"]["port"], hosts["api.example.com"]["validate_ssl"]) == (443, True)
    # The certificate names the domain, not the address: only the 403 is checked there.
    assert (hosts[address]["port"], hosts[address]["use_ssl"], hosts[address]["validate_ssl"]) == (443, True, False)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_alert_notifies_the_one_email_channel(synth, shape):
    stack = synth(**SHAPES[shape])
    channel = stack.one("google_monitoring_notification_channel")

    assert (channel["type"], channel["labels"]) == ("email", {"email_address": "oncall@example.com"})
    channel_id = stack.address("google_monitoring_notification_channel", "id")
    for name, alert in policies(stack).items():
        assert alert["notification_channels"] == [channel_id], name
        assert alert["documentation"]["content"], name


def test_the_alerts_cover_outage_open_door_errors_latency_denials_and_model_loads(synth):
    names = policies(synth(**SHAPES["http"]))

    assert len(names) == 6
    assert {name.split(" ")[0] for name in names} == {"OPEN", "Probe", "5xx", "p95", "Cloud", "The"}


def test_the_canary_alert_exists_only_with_a_canary(synth):
    assert not any("canary" in name for name in policies(synth(**SHAPES["https"])))
    assert any("canary" in name for name in policies(synth(**SHAPES["https-ipv6-canary"])))


def probe_ids(stack) -> set[str]:
    return {f"${{google_monitoring_uptime_check_config.{key}.uptime_check_id}}"
            for key in stack.resources("google_monitoring_uptime_check_config")}  # fmt: skip


@pytest.mark.parametrize("shape", ["http", "https"])
def test_the_open_door_alert_is_critical_and_fires_on_any_2xx_from_a_probe(synth, shape):
    stack = synth(**SHAPES[shape])
    alert = policy(stack, "OPEN DOOR")
    (condition,) = alert["conditions"]
    promql = condition["condition_prometheus_query_language"]
    (ids,) = re.findall(r'check_id=~"([^"]+)"', promql["query"])

    assert alert["severity"] == "CRITICAL"
    assert promql["query"].startswith("max by (check_id, checker_location) (monitoring_googleapis_com:uptime_check_http_status{")
    assert promql["query"].endswith(") >= 200 < 300")  # the status code itself, any 2xx
    assert set(ids.split("|")) == probe_ids(stack)
    assert promql["duration"] == "0s"


def test_a_failing_probe_is_an_alert_of_its_own(synth):
    stack = synth(**SHAPES["https"])
    condition = threshold(stack, "Probe not denied")

    assert policy(stack, "Probe not denied")["severity"] == "CRITICAL"
    assert 'metric.type = "monitoring.googleapis.com/uptime_check/check_passed"' in condition["filter"]
    assert set(re.findall(r'"(\$\{[^"]+\})"', condition["filter"])) == probe_ids(stack)
    assert condition["aggregations"][0]["cross_series_reducer"] == "REDUCE_COUNT_FALSE"


def test_the_5xx_ratio_alert_divides_the_load_balancers_5xx_by_all_its_requests(synth):
    stack = synth(**SHAPES["http"], ALERT_5XX_RATIO="0.2")
    condition = threshold(stack, "5xx above 0.2")
    url_map = f'resource.label.url_map_name = "{stack.address("google_compute_url_map", "name")}"'

    assert condition["threshold_value"] == 0.2
    assert condition["filter"] == condition["denominator_filter"] + " AND metric.label.response_code_class = 500"
    assert url_map in condition["denominator_filter"]
    assert "loadbalancing.googleapis.com/https/request_count" in condition["denominator_filter"]


def test_the_latency_alert_reads_the_95th_percentile_of_total_latencies(synth):
    condition = threshold(synth(**SHAPES["http"], ALERT_P95_MS="750"), "p95 latency above 750 ms")

    assert "loadbalancing.googleapis.com/https/total_latencies" in condition["filter"]
    assert condition["aggregations"][0]["per_series_aligner"] == "ALIGN_PERCENTILE_95"
    assert condition["threshold_value"] == 750


def test_the_denial_alert_counts_the_policys_blocked_requests_a_minute(synth):
    stack = synth(**SHAPES["http"], ALERT_DENIALS_PER_MINUTE="300")
    condition = threshold(stack, "Cloud Armor denies more than 300")

    assert f'resource.label.policy_name = "{stack.address("google_compute_security_policy", "name")}"' in condition["filter"]
    assert 'metric.label.blocked = "true"' in condition["filter"]
    assert condition["aggregations"][0]["per_series_aligner"] == "ALIGN_RATE"
    assert condition["threshold_value"] == 300 / 60  # ALIGN_RATE is a second's


def test_the_canary_alert_compares_the_two_arms_5xx_ratios_in_promql(synth):
    stack = synth(**SHAPES["https-ipv6-canary"])
    (condition,) = policy(stack, "The canary")["conditions"]
    query = condition["condition_prometheus_query_language"]["query"]
    backends = {key: f"${{google_compute_backend_service.{key}.name}}" for key in stack.resources("google_compute_backend_service")}
    canary, stable = (backends[k] for k in sorted(backends, key=lambda k: "canary" not in k))

    left, right = query.split(" > ")
    assert canary in left and stable not in left
    assert stable in right and canary not in right
    assert "or vector(0)" in right  # a stable arm with no 5xx compares as 0, not as nothing
    assert "condition_threshold" not in condition


def test_model_load_failures_are_counted_from_the_services_own_error_line(synth, make_client, capsys, tmp_path):
    stack = synth(**SHAPES["https-ipv6-canary"])
    metric = stack.one("google_logging_metric")
    services = [f"${{google_cloud_run_v2_service.{k}.name}}" for k in stack.resources("google_cloud_run_v2_service")]

    client = make_client(MODEL_URI=str(tmp_path / "missing.onnx"))
    assert client.post("/", json=SEED_REQUEST).status_code == 503
    (entry,) = [e for e in json_lines(capsys.readouterr().out) if e["severity"] == "ERROR"]

    # What the filter asks of the entry, checked against the entry the service wrote.
    assert "severity >= ERROR" in metric["filter"]
    (pattern,) = re.findall(r'jsonPayload\.message =~ "([^"]+)"', metric["filter"])
    assert re.search(pattern, entry["message"]) and pattern == f"^{LOAD_FAILURE_MESSAGE} "
    assert "jsonPayload.cause:*" in metric["filter"] and entry["cause"]
    assert all(f'"{service}"' in metric["filter"] for service in services) and len(services) == 2
    alert = threshold(stack, "The service failed to load")
    assert f'metric.type = "logging.googleapis.com/user/{stack.address("google_logging_metric", "name")}"' in alert["filter"]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_dashboard_is_a_mosaic_of_widgets_the_api_takes(synth, shape):
    dashboard = json.loads(synth(**SHAPES[shape]).one("google_monitoring_dashboard")["dashboard_json"])

    assert dashboard["displayName"]
    layout = dashboard["mosaicLayout"]
    assert set(dashboard) == {"displayName", "mosaicLayout"}
    titles = []
    for tile in layout["tiles"]:
        assert 0 <= tile["xPos"] and tile["xPos"] + tile["width"] <= layout["columns"] <= 48
        (kind,) = tile["widget"].keys() - {"title"}
        assert kind == "xyChart"
        for data_set in tile["widget"]["xyChart"]["dataSets"]:
            series = data_set["timeSeriesQuery"]["timeSeriesFilter"]
            assert series["filter"].startswith('metric.type = "')
            assert re.fullmatch(r"[0-9]+s", series["aggregation"]["alignmentPeriod"])
        titles.append(tile["widget"]["title"])
    # No two tiles overlap.
    cells = [(t["xPos"] + x, t["yPos"] + y) for t in layout["tiles"] for x in range(t["width"]) for y in range(t["height"])]
    assert len(cells) == len(set(cells))
    for wanted in ("response class", "backend", "p95", "Cloud Armor", "Instances", "Model-load"):
        assert any(wanted in title for title in titles), wanted


def test_nothing_of_it_is_a_setting_turned_expression(synth):
    """The email reaches Terraform as written; every `${` in the monitoring resources is a reference."""
    stack = synth(**SHAPES["https-ipv6-canary"])
    for kind in ("google_monitoring_uptime_check_config", "google_monitoring_alert_policy",
                 "google_monitoring_notification_channel", "google_logging_metric", "google_monitoring_dashboard"):  # fmt: skip
        for expression in re.findall(r"\$\{[^}]*\}", json.dumps(stack.resources(kind))):
            assert is_reference(expression), expression
