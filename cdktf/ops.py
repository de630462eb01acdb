"""Operating the endpoint: `make check-ip`, `make endpoint`, `make verify`.

check-ip  which Cloud Armor rule of the synthesized policy each address hits (offline);
          exit 0 when all are allowed, 1 when any is denied, 2 on bad input.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from secure_endpoint.armor import decide
from secure_endpoint.settings import EndpointSettings, SettingsError
from secure_endpoint.synthesized import NoPolicy, load_policy, staleness

ROOT = Path(__file__).resolve().parent.parent
CDKTF = ROOT / "node_modules" / ".bin" / "cdktf"
REQUIRED = ("PROJECT_ID", "MODEL_URI", "ALLOWED_IP_RANGES")
EXIT_ALLOWED, EXIT_DENIED, EXIT_BAD_INPUT = 0, 1, 2


class OpsError(Exception):
    """One sentence for the user; the command exits 2."""


def synthesized_policy(outdir: Path):
    """The policy `cdktf deploy` would apply, synthesizing first when missing or out of date."""
    try:
        settings = EndpointSettings.from_env()
    except SettingsError as error:
        if any(os.environ.get(name) for name in REQUIRED) or not outdir.exists():
            raise OpsError(str(error)) from None
        print(f"note: {', '.join(REQUIRED)} not set; using the policy last synthesized in {outdir}")
        settings = None
    if settings is not None:
        reason = staleness(outdir, settings)
        if reason:
            print(f"synthesizing first: {reason}", flush=True)
            result = subprocess.run(
                [str(CDKTF), "synth", "--output", str(outdir)], cwd=ROOT, capture_output=True, text=True
            )
            if result.returncode != 0:
                raise OpsError(f"cdktf synth failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    try:
        return load_policy(outdir)
    except NoPolicy as error:
        raise OpsError(str(error)) from None


def check_ip(addresses: list[str], outdir: Path) -> int:
    tokens = [token for raw in addresses for token in raw.replace(",", " ").split()]
    if not tokens:
        raise OpsError("expected at least one address: make check-ip IP=203.0.113.4")
    rules = synthesized_policy(outdir)
    decisions = []
    for token in tokens:
        try:
            decisions.append(decide(rules, token))
        except ValueError:
            raise OpsError(f"expected IPv4 or IPv6 addresses, got {token!r}") from None
    width = max(len(d.address) for d in decisions)
    for decision in decisions:
        rule = decision.rule.label() if decision.rule else "no rule matched"
        print(f"{decision.address:<{width}}  {decision.action:<9}  {rule}")
        for preview in decision.previews:
            print(f"{'':<{width}}  (also matches {preview.label()} in preview mode: logged, not enforced)")
    skipped = decisions[0].not_evaluated
    if skipped:
        print(
            f"not evaluated: {len(skipped)} expression rules at priorities "
            f"{skipped[0].priority}-{skipped[-1].priority}, which look at the request, not only the address"
        )
    return EXIT_ALLOWED if all(d.allowed for d in decisions) else EXIT_DENIED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "cdktf.out", help="cdktf's output folder")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-ip", help="which rule an address hits")
    check.add_argument("addresses", nargs="*", metavar="ADDRESS")
    args = parser.parse_args(argv)
    try:
        if args.command == "check-ip":
            return check_ip(args.addresses, args.out)
    except OpsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
