"""A toolchain or provider upgrade keeps every address Terraform knows the deployed stack by.

tests/data/resource_addresses.json was written by `python -m tests.resource_addresses` before
the move to CDK Terrain; a changed logical id would destroy and create the resource it names,
unless a `moved` block in the stack takes the recorded address to the new one.
"""

import json

import pytest

from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK
from secure_endpoint.settings import STACK_NAME
from tests.resource_addresses import _BASE, SNAPSHOT, VARIANTS, addresses

RECORDED = json.loads(SNAPSHOT.read_text())


def test_the_snapshot_covers_every_settings_shape():
    assert RECORDED.keys() == VARIANTS.keys()


def moved_on(recorded: dict[str, list[str]], stack: dict) -> dict[str, list[str]]:
    """The recorded addresses, each taken where the stack's `moved` blocks say it went."""
    moves = {move["from"]: move["to"] for move in stack.get("moved", [])}
    return {**recorded, "resource": sorted(moves.get(address, address) for address in recorded["resource"])}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_serving_stack_keeps_its_addresses(synth, variant):
    stack = synth(**VARIANTS[variant]).json

    assert addresses(stack) == moved_on(RECORDED[variant][STACK_NAME], stack)


def test_the_bootstrap_stack_keeps_its_addresses():
    from cdktn import App, Testing
    from secure_endpoint.bootstrap import BootstrapStack
    from secure_endpoint.bootstrap_settings import BootstrapSettings

    settings = BootstrapSettings.from_env(_BASE)
    stack = json.loads(Testing.synth(BootstrapStack(App(), BOOTSTRAP_STACK, settings=settings)))

    assert addresses(stack) == RECORDED[next(iter(VARIANTS))][BOOTSTRAP_STACK]
