"""Operating the endpoint: `make check-ip`, `make endpoint`, `make verify`.

check-ip  which Cloud Armor rule of the synthesized policy each address hits (offline);
          exit 0 when all are allowed, 1 when any is denied.
endpoint  the deployed load balancer's addresses, URL and ready curl commands (Compute API),
          and the traffic split with each arm's model (Cloud Run Admin API).
verify    compares the live policy and every way in (Cloud Run services, the forwarding rules on
          the endpoint's addresses, their proxies, URL maps and SSL policy, every backend service
          that reaches the service), each arm's model and the canary split with the code; exit 0
          in sync, 1 on drift.

Exit 2, with one line on stderr, whenever the check itself cannot be made: bad input or settings,
nothing (or something unreadable) synthesized, no credentials or refused ones, an API error.
endpoint and verify use Application Default Credentials and the settings of `make deploy`.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The storage naming rules the settings use (training.buckets) live beside cdktf/.
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from secure_endpoint.allowlist import AllowlistError, refuse_zone_id  # noqa: E402
from secure_endpoint.allowlist_owners import owner_lines, recorded_entries  # noqa: E402
from secure_endpoint.armor import PolicyError, check_policy, decide  # noqa: E402
from secure_endpoint.internal_plan import POLICY_NAME as INTERNAL_POLICY_NAME  # noqa: E402
from secure_endpoint.live import Live, LiveError, drift, endpoint_report  # noqa: E402
from secure_endpoint.live_internal import InternalLive, internal_drift, internal_endpoint_lines  # noqa: E402
from secure_endpoint.plan import CANARY_HEADER, CANARY_HEADER_VALUE, POLICY_NAME, plan_routing  # noqa: E402
from secure_endpoint.settings import EndpointSettings, SettingsError  # noqa: E402
from secure_endpoint.synthesized import NoPolicy, load_policy, staleness  # noqa: E402

CDKTN = ROOT / "node_modules" / ".bin" / "cdktn"
REQUIRED = ("PROJECT_ID", "MODEL_URI", "ALLOWED_IP_RANGES", "ALLOWLIST_FILE")
EXIT_ALLOWED, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2
EXIT_IN_SYNC, EXIT_DRIFT = 0, 1


class OpsError(Exception):
    """One sentence for the user; the command exits 2."""


def synthesized_policy(outdir: Path):
    """The policy `cdktn deploy` would apply, synthesizing first when missing or out of date."""
    try:
        settings = EndpointSettings.from_env()
    except SettingsError as error:
        if any(os.environ.get(name) for name in REQUIRED):
            raise OpsError(str(error)) from None
        if not outdir.exists():
            raise OpsError(
                f"{REQUIRED[0]}: required, with {' and '.join(REQUIRED[1:])}, to synthesize the "
                f"policy; without settings there must be a synthesized policy, and {outdir} does not exist"
            ) from None
        print(f"note: {', '.join(REQUIRED)} not set; using the policy last synthesized in {outdir}")
        settings = None
    try:
        if settings is not None:
            reason = staleness(outdir, settings)
            if reason:
                print(f"synthesizing first: {reason}", flush=True)
                _synthesize(outdir)
        return load_policy(outdir)
    except NoPolicy as error:
        raise OpsError(str(error)) from None


def _synthesize(outdir: Path) -> None:
    try:
        result = subprocess.run(
            [str(CDKTN), "synth", "--output", str(outdir)], cwd=ROOT, capture_output=True, text=True
        )
    except OSError as error:
        raise OpsError(
            f"cdktn could not start ({error}): run `make synth` once, it installs cdktn first"
        ) from None
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        last = lines[-1] if lines else "no output"
        raise OpsError(
            f"cdktn synth failed (exit {result.returncode}: {last}); run `make synth` to see all of it"
        )


def check_ip(addresses: list[str], outdir: Path) -> int:
    tokens = [token for raw in addresses for token in raw.replace(",", " ").split()]
    if not tokens:
        raise OpsError("expected at least one address: make check-ip IP=203.0.113.4")
    for token in tokens:
        # Python reads `2001:db8::5%eth0` as an address; the allowlist refuses it, and so does this.
        try:
            refuse_zone_id(token)
        except AllowlistError as error:
            raise OpsError(str(error)) from None
    rules = synthesized_policy(outdir)
    try:
        check_policy(rules)
    except PolicyError as error:
        raise OpsError(f"the synthesized policy cannot be judged: {error}") from None
    decisions = []
    for token in tokens:
        try:
            decisions.append(decide(rules, token))
        except ValueError:
            raise OpsError(f"expected IPv4 or IPv6 addresses, got {token!r}") from None
    width = max(len(d.address) for d in decisions)
    entries = recorded_entries(outdir)
    for decision in decisions:
        rule = decision.rule.label() if decision.rule else "no rule matched"
        print(f"{decision.address:<{width}}  {decision.action:<9}  {rule}")
        for line in owner_lines(entries, decision.address) if decision.allowed else ():
            print(f"{'':<{width}}  {line}")
        for preview in decision.previews:
            print(f"{'':<{width}}  (also matches {preview.label()} in preview mode: logged, not enforced)")
        if decision.ipv4_mapped:
            print(
                f"{'':<{width}}  (an IPv4-mapped IPv6 address, judged as IPv6; a client calling over "
                f"IPv4 arrives as {decision.ipv4_mapped})"
            )
    skipped = decisions[0].not_evaluated
    if skipped:
        print(
            f"not evaluated: {len(skipped)} expression rules at priorities "
            f"{skipped[0].priority}-{skipped[-1].priority}, which look at the request, not only the address"
        )
    return EXIT_ALLOWED if all(d.allowed for d in decisions) else EXIT_DENIED


def endpoint(live_factory, internal_factory=InternalLive) -> int:
    settings = _settings()
    if settings.internal:
        print("\n".join(internal_endpoint_lines(internal_factory(settings.project_id), settings)))
        return EXIT_ALLOWED
    report = endpoint_report(live_factory(settings.project_id), settings)
    print("\n".join(report.lines))
    return EXIT_ALLOWED


def verify(live_factory, internal_factory=InternalLive) -> int:
    settings = _settings()
    if settings.internal:
        return _verify_internal(internal_factory(settings.project_id), settings)
    differences = drift(live_factory(settings.project_id), settings)
    if not differences:
        print(
            f"in sync: the live policy {POLICY_NAME}, the Cloud Run service, the forwarding rules, "
            "proxies and URL maps, and every backend service that reaches the service are what the code "
            "synthesizes"
        )
        routing = plan_routing(settings)
        if routing.header_route:
            print(
                f"and so is the split: {routing.shares()}; "
                f"{CANARY_HEADER}: {CANARY_HEADER_VALUE} to {routing.header_route}"
            )
        return EXIT_IN_SYNC
    print(f"drift: what is live differs from the code in {len(differences)} ways:")
    for difference in differences:
        print(f"  - {difference}")
    print("`make deploy` puts the code's settings back; change ALLOWED_IP_RANGES to keep a live range")
    return EXIT_DRIFT


def _verify_internal(live, settings: EndpointSettings) -> int:
    differences = internal_drift(live, settings)
    if not differences:
        print(
            f"in sync: the live regional policy {INTERNAL_POLICY_NAME} (attached to every backend, "
            "default deny), the internal forwarding rules, the Cloud Run services' ingress and "
            "closed run.app URLs, and no other backend or NEG reaching the service"
        )
        return EXIT_IN_SYNC
    print(f"drift: what is live differs from the code in {len(differences)} ways:")
    for difference in differences:
        print(f"  - {difference}")
    print("`make deploy` puts the code's settings back; change ALLOWED_IP_RANGES to keep a live range")
    return EXIT_DRIFT


def _settings() -> EndpointSettings:
    try:
        return EndpointSettings.from_env()
    except SettingsError as error:
        raise OpsError(f"{error} (the same settings as `make deploy`)") from None


def main(
    argv: list[str] | None = None,
    live_factory=Live.with_default_credentials,
    internal_factory=InternalLive.with_default_credentials,
) -> int:
    parser = argparse.ArgumentParser(prog="ops", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cdktf.out", help="cdktf's output folder")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-ip", help="which rule an address hits")
    check.add_argument("addresses", nargs="*", metavar="ADDRESS")
    commands.add_parser("endpoint", help="the deployed addresses, URL and curl commands")
    commands.add_parser("verify", help="compare the live policy and every way in with the code")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-ip":
            return check_ip(args.addresses, args.out)
        if args.command == "endpoint":
            return endpoint(live_factory, internal_factory)
        return verify(live_factory, internal_factory)
    except (OpsError, LiveError) as error:
        # A SettingsError holds one line per bad setting.
        for line in str(error).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
