"""What `cdktf synth` wrote: the stack's Terraform JSON and the settings it was made from."""

import json
from pathlib import Path

from secure_endpoint.armor import Rule, rules_from_terraform
from secure_endpoint.settings import STACK_NAME, EndpointSettings

SETTINGS_FILE = "settings.json"
SOURCES = Path(__file__).resolve().parent


class NoPolicy(Exception):
    """Nothing synthesized yet, or no policy in it."""


def stack_file(outdir: Path) -> Path:
    return outdir / "stacks" / STACK_NAME / "cdk.tf.json"


def record_settings(outdir: Path, settings: EndpointSettings) -> None:
    (outdir / SETTINGS_FILE).write_text(json.dumps(settings.as_json(), indent=2) + "\n")


def staleness(outdir: Path, settings: EndpointSettings) -> str | None:
    """Why the synthesized output no longer matches these settings and this code, or None."""
    synthesized = stack_file(outdir)
    if not synthesized.exists():
        return f"nothing synthesized in {outdir}"
    recorded = outdir / SETTINGS_FILE
    if not recorded.exists() or json.loads(recorded.read_text()) != settings.as_json():
        return "the settings changed since the last synth"
    made = synthesized.stat().st_mtime
    if any(source.stat().st_mtime > made for source in SOURCES.parent.rglob("*.py")):
        return "the infrastructure code changed since the last synth"
    return None


def load_policy(outdir: Path) -> list[Rule]:
    path = stack_file(outdir)
    try:
        stack = json.loads(path.read_text())
    except FileNotFoundError:
        raise NoPolicy(f"no synthesized stack at {path}; run `make synth`") from None
    policies = list(stack.get("resource", {}).get("google_compute_security_policy", {}).values())
    if len(policies) != 1:
        raise NoPolicy(f"expected 1 Cloud Armor policy in {path}, found {len(policies)}")
    return rules_from_terraform(policies[0])
