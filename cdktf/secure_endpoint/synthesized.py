"""What `cdktf synth` wrote: the stack's Terraform JSON and the settings it was made from."""

import json
from pathlib import Path

from secure_endpoint.armor import Rule, rules_from_terraform
from secure_endpoint.settings import STACK_NAME, EndpointSettings

SETTINGS_FILE = "settings.json"
SOURCES = Path(__file__).resolve().parent


class NoPolicy(Exception):
    """Nothing synthesized yet, no policy in it, or files that cdktf did not write as they are."""


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
    if not recorded.exists() or _read_json(recorded) != settings.as_json():
        return "the settings changed since the last synth"
    made = synthesized.stat().st_mtime
    if any(source.stat().st_mtime > made for source in SOURCES.parent.rglob("*.py")):
        return "the infrastructure code changed since the last synth"
    return None


POLICY_KINDS = ("google_compute_security_policy", "google_compute_region_security_policy")


def load_policy(outdir: Path) -> list[Rule]:
    path = stack_file(outdir)
    if not path.exists():
        raise NoPolicy(f"no synthesized stack at {path}; run `make synth`")
    stack = _read_json(path)
    policies = []
    # The public edge's global policy, or the internal edge's regional one (EXPOSURE=internal).
    for kind in POLICY_KINDS:
        try:
            policies.extend(stack["resource"][kind].values())
        except (KeyError, TypeError, AttributeError):
            pass
    if len(policies) != 1:
        raise NoPolicy(
            f"expected 1 Cloud Armor policy in {path}, found {len(policies)}; run `make synth` again"
        )
    try:
        return rules_from_terraform(policies[0])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise NoPolicy(
            f"the Cloud Armor policy in {path} is not one cdktf wrote ({type(error).__name__}: {error}); "
            "run `make synth` again"
        ) from None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NoPolicy(f"{path} cannot be read ({error}); run `make synth` again") from None
