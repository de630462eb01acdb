"""What the endpoint costs a month (`make cost [REQUESTS=...]`), itemised.

The prices come from one dated table (`prices.toml`); what is priced comes from the synthesized
stack (`cdk.tf.json`: forwarding rules, Cloud Armor policies and their rules, the service's CPU and
memory, the load balancer's log sampling) and the server CPU a request takes from the benchmark's
own figure (`bench/results/latest.json`). Only the JSON is read, never the constructs.
"""

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

PRICES = Path(__file__).resolve().parent / "prices.toml"
ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "results" / "latest.json"
STACK = ROOT / "cdktf.out" / "stacks" / "secure-inference" / "cdk.tf.json"
DEFAULT_REQUESTS = (1_000_000, 100_000_000)
GIB = 1024**3
# The benchmark's figure at 16 connections: an instance kept busy, the floor of a request's cost.
BENCH_CONNECTIONS = "16"


class CostError(Exception):
    """Something to price from is missing or not what it should be."""


@dataclass(frozen=True)
class Stack:
    """What the synthesized serving stack makes that has a price."""

    forwarding_rules: int
    policies: int
    rules: int
    services: int
    vcpus: float
    memory_gib: float
    min_instances: int
    log_sample_rate: float


@dataclass(frozen=True)
class Item:
    name: str
    quantity: str
    usd: float


def _memory_gib(text: str) -> float:
    units = {
        "Ki": 1 / 1024**2, "Mi": 1 / 1024, "Gi": 1.0, "k": 1e3 / GIB, "M": 1e6 / GIB, "G": 1e9 / GIB,
    }  # fmt: skip
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text) / GIB


def read_stack(stack: dict) -> Stack:
    resources = stack.get("resource", {})
    policies = resources.get("google_compute_security_policy", {})
    services = list(resources.get("google_cloud_run_v2_service", {}).values())
    if not services:
        raise CostError("expected a synthesized serving stack with a Cloud Run service, found none")
    # `inference` sorts before `inference-canary`: the stable service's size.
    stable = min(services, key=lambda service: service.get("name", ""))
    limits = stable["template"]["containers"][0].get("resources", {}).get("limits", {})
    logs = [
        backend.get("log_config", {})
        for backend in resources.get("google_compute_backend_service", {}).values()
    ]
    rates = [config.get("sample_rate", 1.0) for config in logs if config.get("enable")]
    return Stack(
        forwarding_rules=len(resources.get("google_compute_global_forwarding_rule", {})),
        policies=len(policies),
        rules=sum(len(policy.get("rule", [])) for policy in policies.values()),
        services=len(services),
        vcpus=float(limits.get("cpu", "1")),
        memory_gib=_memory_gib(limits.get("memory", "512Mi")),
        min_instances=sum(
            service["template"].get("scaling", {}).get("min_instance_count", 0)
            for service in services
        ),
        log_sample_rate=max(rates, default=0.0),
    )


def cpu_seconds_per_request(bench: dict) -> float:
    try:
        return bench["connections"][BENCH_CONNECTIONS]["service"]["cpu_us"]["median"] / 1e6
    except (KeyError, TypeError) as error:
        raise CostError(
            f"{BENCH}: expected the service's CPU a request at {BENCH_CONNECTIONS} connections, "
            f"found no {error}"
        ) from None


def estimate(requests: int, stack: Stack, prices: dict, cpu_s: float) -> list[Item]:
    """The month's items for this many requests; the free tiers are taken off."""
    hours = prices["assumptions"]["hours_per_month"]
    fr, data, armor, run, logs = (
        prices[key]
        for key in ("forwarding_rules", "load_balancer_data", "cloud_armor", "cloud_run", "logging")
    )
    millions = requests / 1e6
    gib = requests * prices["assumptions"]["bytes_per_request"] / GIB
    rules_usd = 0.0
    if stack.forwarding_rules:
        extra = max(0, stack.forwarding_rules - 5)
        rules_usd = hours * (fr["first_five_per_hour"] + extra * fr["each_additional_per_hour"])
    # A busy instance spends the benchmark's CPU on each request; its memory is billed as long.
    instance_s = requests * cpu_s
    vcpu_s, gib_s = instance_s * stack.vcpus, instance_s * stack.memory_gib
    log_bytes = prices["assumptions"]["log_bytes_per_request"]
    log_gib = requests * stack.log_sample_rate * log_bytes / GIB
    return [
        Item("forwarding rules", f"{stack.forwarding_rules} rule(s), {hours} h", rules_usd),
        Item("load balancer data processed", f"{gib:,.2f} GiB", gib * data["per_gib"]),
        Item("Cloud Armor policy", f"{stack.policies} polic{'y' if stack.policies == 1 else 'ies'}",
             stack.policies * armor["per_policy_per_month"]),
        Item("Cloud Armor rules", f"{stack.rules} rules",
             stack.rules * armor["per_rule_per_month"]),
        Item("Cloud Armor requests", f"{millions:,.1f} million",
             millions * armor["per_million_requests"]),
        Item("Cloud Run requests",
             f"{millions:,.1f} million, {run['free_requests'] / 1e6:g} million free",
             max(0.0, requests - run["free_requests"]) / 1e6 * run["per_million_requests"]),
        Item("Cloud Run CPU", f"{vcpu_s:,.0f} vCPU-s, {run['free_vcpu_seconds']:,} free",
             max(0.0, vcpu_s - run["free_vcpu_seconds"]) * run["per_vcpu_second"]),
        Item("Cloud Run memory", f"{gib_s:,.0f} GiB-s, {run['free_gib_seconds']:,} free",
             max(0.0, gib_s - run["free_gib_seconds"]) * run["per_gib_second"]),
        Item("Cloud Logging", f"{log_gib:,.1f} GiB, {logs['free_gib']} GiB free",
             max(0.0, log_gib - logs["free_gib"]) * logs["per_gib"]),
    ]  # fmt: skip


def quiet_cpu_ceiling(requests: int, stack: Stack, prices: dict) -> float:
    """Cloud Run CPU and memory if no two requests ever overlapped: each one's busy interval is
    rounded up to the billing granularity. The bound for quiet traffic."""
    run = prices["cloud_run"]
    instance_s = requests * run["billing_granularity_seconds"]
    cpu = max(0.0, instance_s * stack.vcpus - run["free_vcpu_seconds"]) * run["per_vcpu_second"]
    gib_s = instance_s * stack.memory_gib
    memory = max(0.0, gib_s - run["free_gib_seconds"]) * run["per_gib_second"]
    return cpu + memory


def report(requests: int, stack: Stack, prices: dict, cpu_s: float) -> str:
    items = estimate(requests, stack, prices, cpu_s)
    total = sum(item.usd for item in items)
    width = max(len(item.name) for item in items)
    lines = [f"{requests:,} requests a month:"]
    lines += [f"  {item.name:<{width}}  {item.quantity:<34} ${item.usd:>10,.2f}" for item in items]
    lines.append(f"  {'total':<{width}}  {'':<34} ${total:>10,.2f}")
    busy = sum(item.usd for item in items if item.name in {"Cloud Run CPU", "Cloud Run memory"})
    ceiling = quiet_cpu_ceiling(requests, stack, prices)
    if ceiling > busy:
        granularity = prices["cloud_run"]["billing_granularity_seconds"]
        lines.append(
            f"  Cloud Run CPU and memory above are for busy instances ({cpu_s * 1e6:.0f} us a "
            f"request, the benchmark's); if no two requests overlapped, each billed "
            f"{granularity:g} s, they would be ${ceiling:,.2f}"
        )
    if stack.min_instances:
        lines.append(
            f"  not included: {stack.min_instances} minimum instance(s) kept warm, "
            "billed while idle"
        )
    return "\n".join(lines)


def _counts(words: list[str]) -> list[int]:
    if not words:
        return list(DEFAULT_REQUESTS)
    try:
        counts = [int(word.replace("_", "").replace(",", "")) for word in words]
    except ValueError:
        counts = []
    if not counts or any(count < 0 for count in counts):
        raise CostError(
            f"REQUESTS: expected whole numbers of requests a month, got {' '.join(words)!r}"
        )
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requests", nargs="*", help="requests a month (default: 1 and 100 million)")
    parser.add_argument("--stack", type=Path, default=STACK)
    args = parser.parse_args(argv)
    try:
        counts = _counts(args.requests)
    except CostError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        prices = tomllib.loads(PRICES.read_text())
        stack = read_stack(json.loads(args.stack.read_text()))
        cpu_s = cpu_seconds_per_request(json.loads(BENCH.read_text()))
    except (OSError, ValueError, CostError) as error:
        print(f"cost: {error}", file=sys.stderr)
        return 2
    print(
        f"Monthly estimate at list prices checked {prices['checked']} "
        f"(asia-northeast1, Cloud Run Tier 1; {PRICES.name}):"
    )
    for count in counts:
        print(report(count, stack, prices, cpu_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
