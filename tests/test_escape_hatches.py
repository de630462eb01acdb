"""Every field the stacks set goes through the typed bindings, checked by jsii and the schema.

An escape hatch (a raw override, a changed logical id, a provider or resource written by hand)
reaches Terraform unchecked, and the merged cdk.tf.json no longer shows which field came that way:
the construct tree and the source are where they are seen. Each one kept is listed here, with why.
"""

import ast
import json
from pathlib import Path

import jsii
import pytest

from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings
from secure_endpoint.settings import STACK_NAME, EndpointSettings
from tests.helpers import ROOT
from tests.resource_addresses import _BASE, VARIANTS

# (construct path or source file, what) -> why it cannot be typed. Empty: nothing needs one.
_BETA = (
    "hashicorp/google-beta, for the regional backend service alone: the GA provider attaches its "
    "security_policy only on update (terraform-provider-google issue 29240), so the first apply "
    "of EXPOSURE=internal would leave the backend without Cloud Armor; no cdktn bindings exist "
    "for google-beta, so its provider block (project, region, version pinned to the GA one's) is "
    "written by hand while the resource stays typed"
)
ALLOWED: dict[tuple[str, str], str] = {
    ("cdktf/secure_endpoint/internal_edge.py", "class GoogleBetaProvider(TerraformProvider)"): _BETA,
    ("cdktf/secure_endpoint/internal_edge.py", "_synthesize_attributes"): _BETA,
    ("cdktf/secure_endpoint/internal_edge.py", "_synthesize_hcl_attributes"): _BETA,
}

SOURCE = ROOT / "cdktf"
# Calls that write past the bindings' types, or rename what Terraform keys its state by.
OVERRIDES = {"add_override", "override_logical_id"}
# Base classes and constructors for untyped elements: a provider, resource or module by hand.
UNTYPED = {"TerraformProvider", "TerraformResource", "TerraformDataSource", "TerraformElement", "TerraformHclModule"}


def escape_hatches_in(path: Path, root: Path = ROOT) -> list[tuple[str, str]]:
    """(file:line, what) for every override call, untyped element and hand-written synthesis."""
    where = str(path.relative_to(root))
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in OVERRIDES or name in UNTYPED:
                found.append((f"{where}:{node.lineno}", name))
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in UNTYPED:
                    found.append((f"{where}:{node.lineno}", f"class {node.name}({name})"))
        elif isinstance(node, ast.FunctionDef) and node.name in ("_synthesize_attributes", "_synthesize_hcl_attributes"):
            found.append((f"{where}:{node.lineno}", node.name))
    return found


def test_the_source_holds_no_escape_hatch_but_the_allowed():
    found = [hatch for path in sorted(SOURCE.rglob("*.py")) for hatch in escape_hatches_in(path)]

    assert [hatch for hatch in found if (hatch[0].split(":")[0], hatch[1]) not in ALLOWED] == []


def test_the_source_scan_sees_an_override(tmp_path):
    sample = ROOT / "cdktf" / "secure_endpoint" / "serving.py"
    text = sample.read_text() + '\n\ndef _hatch(service):\n    service.add_override("default_uri_disabled", True)\n'
    copy = tmp_path / "serving.py"
    copy.write_text(text)

    assert [what for _, what in escape_hatches_in(copy, tmp_path)] == ["add_override"]


def raw_overrides(stack) -> dict[str, dict]:
    """Every element's raw overrides (what add_override wrote), by construct path."""
    from cdktn import TerraformElement

    found = {}
    for construct in stack.node.find_all():
        if TerraformElement.is_terraform_element(construct):
            overrides = jsii.get(construct, "rawOverrides")
            if overrides:
                found[construct.node.path] = overrides
    return found


def built_stacks():
    from cdktn import App

    from secure_endpoint.bootstrap import BootstrapStack
    from secure_endpoint.stack import SecureEndpointStack

    stacks = [BootstrapStack(App(), BOOTSTRAP_STACK, settings=BootstrapSettings.from_env(_BASE))]
    for variant in VARIANTS.values():
        settings = EndpointSettings.from_env({**_BASE, **variant})
        stacks.append(SecureEndpointStack(App(), STACK_NAME, settings=settings))
    return stacks


@pytest.fixture(scope="module")
def stacks():
    return built_stacks()


def test_no_construct_of_either_stack_carries_a_raw_override_but_the_allowed(stacks):
    found = {path: overrides for stack in stacks for path, overrides in raw_overrides(stack).items()}

    unexplained = {
        path: sorted(overrides)
        for path, overrides in found.items()
        if any((path, field) not in ALLOWED for field in overrides)
    }
    assert unexplained == {}, json.dumps(unexplained)


def test_the_tree_walk_sees_a_raw_override():
    from cdktn import App

    from secure_endpoint.stack import SecureEndpointStack

    settings = EndpointSettings.from_env(_BASE)
    stack = SecureEndpointStack(App(), STACK_NAME, settings=settings)
    stack.serving.service.add_override("default_uri_disabled", True)

    # The service's construct id carries the region (ServingBackend).
    path = f"{STACK_NAME}/serving/service-{settings.region}"
    assert raw_overrides(stack) == {path: {"default_uri_disabled": True}}
