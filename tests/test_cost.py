"""`make cost`: the monthly estimate, from the dated price table and the synthesized stack."""

import datetime
import json
import re
import subprocess
import sys
import tomllib

import pytest

from secure_endpoint.cost import BENCH, PRICES, Stack, cpu_seconds_per_request, estimate, read_stack, report
from tests.helpers import ROOT

# The same settings as test_infra's fixtures, so the session's synths are reused.
HTTPS = {"DOMAIN": "api.example.com", "IPV6": "true"}


@pytest.fixture(scope="module")
def prices():
    return tomllib.loads(PRICES.read_text())


@pytest.fixture(scope="module")
def cpu_s():
    return cpu_seconds_per_request(json.loads(BENCH.read_text()))


def items(requests, stack, prices, cpu_s) -> dict[str, float]:
    return {item.name: item.usd for item in estimate(requests, stack, prices, cpu_s)}


def test_the_price_table_is_dated_and_names_its_sources(prices):
    assert isinstance(prices["checked"], datetime.date)
    for section in ("forwarding_rules", "load_balancer_data", "cloud_armor", "cloud_run", "logging"):
        assert prices[section]["source"].startswith("https://cloud.google.com/"), section
    assert "asia-northeast1" in PRICES.read_text()  # the region whose tier the figures are


def test_the_rules_are_counted_from_the_synthesized_policy(synth):
    with_waf, without_waf = synth(), synth(WAF_RULES="false")

    assert read_stack(with_waf.json).rules == len(with_waf.policy_rules())
    assert read_stack(without_waf.json).rules == len(without_waf.policy_rules())
    assert read_stack(without_waf.json).rules < read_stack(with_waf.json).rules
    assert read_stack(with_waf.json).policies == 1


def test_a_million_requests_cost_the_forwarding_rule_and_cloud_armor(synth, prices, cpu_s):
    stack = read_stack(synth().json)
    armor = prices["cloud_armor"]

    cost = items(1_000_000, stack, prices, cpu_s)

    assert cost["forwarding rules"] == pytest.approx(730 * 0.025)
    assert cost["Cloud Armor policy"] == armor["per_policy_per_month"] == 5.0
    assert cost["Cloud Armor rules"] == pytest.approx(stack.rules * armor["per_rule_per_month"])
    assert cost["Cloud Armor requests"] == pytest.approx(0.75)
    assert cost["load balancer data processed"] == pytest.approx(1_000_000 * 1024 / 1024**3 * 0.008)
    # Within Cloud Run's and Cloud Logging's free tiers.
    assert cost["Cloud Run requests"] == cost["Cloud Run CPU"] == cost["Cloud Run memory"] == cost["Cloud Logging"] == 0
    fixed = cost["forwarding rules"] + cost["Cloud Armor policy"] + cost["Cloud Armor rules"] + cost["Cloud Armor requests"]
    assert fixed / sum(cost.values()) > 0.99


def test_a_hundred_million_requests_pay_past_the_free_tiers(synth, prices, cpu_s):
    stack = read_stack(synth().json)

    cost = items(100_000_000, stack, prices, cpu_s)

    assert cost["Cloud Run requests"] == pytest.approx(98 * 0.40)
    assert cost["Cloud Armor requests"] == pytest.approx(75.0)
    log_gib = 100_000_000 * stack.log_sample_rate * 2048 / 1024**3
    assert cost["Cloud Logging"] == pytest.approx((log_gib - 50) * 0.50)
    vcpu_s = 100_000_000 * cpu_s * stack.vcpus
    assert cost["Cloud Run CPU"] == pytest.approx(max(0.0, vcpu_s - 180_000) * 0.000024)


def test_up_to_five_forwarding_rules_are_one_charge(synth, prices, cpu_s):
    https = read_stack(synth(**HTTPS).json)
    six = Stack(**{**https.__dict__, "forwarding_rules": 6})

    assert https.forwarding_rules == 4
    assert items(0, https, prices, cpu_s)["forwarding rules"] == pytest.approx(730 * 0.025)
    assert items(0, six, prices, cpu_s)["forwarding rules"] == pytest.approx(730 * (0.025 + 0.01))


def test_the_cpu_a_request_is_the_benchmark_s_own_figure(cpu_s):
    bench = json.loads(BENCH.read_text())

    assert cpu_s == bench["connections"]["16"]["service"]["cpu_us"]["median"] / 1e6


def test_the_service_size_and_log_sampling_come_from_the_stack(synth):
    stack = read_stack(synth().json)

    assert (stack.vcpus, stack.memory_gib, stack.log_sample_rate, stack.services) == (1.0, 0.5, 1.0, 1)


def test_the_report_itemises_and_totals(synth, prices, cpu_s):
    stack = read_stack(synth().json)

    text = report(1_000_000, stack, prices, cpu_s)

    total = sum(items(1_000_000, stack, prices, cpu_s).values())
    assert text.splitlines()[0] == "1,000,000 requests a month:"
    lines = text.splitlines()
    assert len(lines) == 1 + 9 + 1
    assert lines[-1].split() == ["total", "$", f"{total:,.2f}"]
    assert sum(float(line.rsplit("$", 1)[1].replace(",", "")) for line in lines[1:-1]) == pytest.approx(total, abs=0.05)


def test_the_command_prints_both_defaults_and_refuses_a_bad_count(synth, tmp_path):
    (tmp_path / "cdk.tf.json").write_text(json.dumps(synth().json))
    run = [sys.executable, "-m", "secure_endpoint.cost", "--stack", str(tmp_path / "cdk.tf.json")]
    env = {"PYTHONPATH": str(ROOT / "cdktf")}

    default = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    bad = subprocess.run([*run, "lots"], env=env, capture_output=True, text=True, timeout=60)

    assert default.returncode == 0, default.stderr
    assert "1,000,000 requests a month:" in default.stdout
    assert "100,000,000 requests a month:" in default.stdout
    assert bad.returncode == 2
    assert bad.stderr.strip() == "REQUESTS: expected whole numbers of requests a month, got 'lots'"


def test_the_cost_page_shows_what_the_command_prints_for_the_example_settings(synth, tmp_path):
    from tests.test_diagram import example_settings

    page = (ROOT / "docs" / "cost.md").read_text()
    (shown,) = re.findall(r"```sh\nmake cost\n```\n\n```text\n(.*?)```", page, re.S)
    (tmp_path / "cdk.tf.json").write_text(json.dumps(synth(**example_settings()).json))

    printed = subprocess.run(
        [sys.executable, "-m", "secure_endpoint.cost", "--stack", str(tmp_path / "cdk.tf.json")],
        env={"PYTHONPATH": str(ROOT / "cdktf")}, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip

    assert printed == shown
