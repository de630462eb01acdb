"""The order Terraform gives the changes that move traffic between services, read from the
synthesized dependencies (references and depends_on) of the stacks before and after: a canary
added, a canary rolled back or promoted, and REGION changed.

Terraform creates and updates a resource after everything it depends on, destroys it before
everything it depends on, and forces create_before_destroy on everything a create_before_destroy
resource depends on (ArmoredEdge's docstring draws the consequences)."""

import re
import shutil

import pytest

from tests.terraform_model import data_name, node, target

RUN = "google_cloud_run_v2_service"
WAIT = "time_sleep"
NEG = "google_compute_region_network_endpoint_group"
BACKEND = "google_compute_backend_service"
URL_MAP = "google_compute_url_map"
CANARY_MODEL = "gs://demo-models/models/iris/cd827946f6342979/model.onnx"
CANARY = {"CANARY_MODEL_URI": CANARY_MODEL, "CANARY_PERCENT": "5"}
# Promotion: the canary's model becomes the stable one and the canary settings go.
PROMOTED = {"MODEL_URI": CANARY_MODEL}
OTHER_REGION = {"REGION": "europe-west1"}
_REFERENCE = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)")


def addresses(stack) -> set[str]:
    return {f"{kind}.{name}" for kind, named in stack.json["resource"].items() for name in named}


def body(stack, address: str) -> dict:
    kind, name = address.split(".", 1)
    return stack.resources(kind)[name]


def dependencies(stack, address: str) -> set[str]:
    """What `address` depends on directly: the managed resources it references, and depends_on."""
    resource = body(stack, address)
    text = repr({key: value for key, value in resource.items() if key != "depends_on"})
    referenced = {f"{kind}.{name}" for kind, name in _REFERENCE.findall(text) if kind != "data"}
    return (referenced | set(resource.get("depends_on", []))) & addresses(stack)


def closure(stack, address: str) -> set[str]:
    """Everything `address` depends on, directly or not: what Terraform records in the state."""
    seen: set[str] = set()
    todo = [address]
    while todo:
        for dependency in dependencies(stack, todo.pop()) - seen:
            seen.add(dependency)
            todo.append(dependency)
    return seen


def create_before_destroy(stack, address: str) -> bool:
    return bool(body(stack, address).get("lifecycle", {}).get("create_before_destroy"))


def named(stack, kind: str, name: str) -> str:
    (address,) = [f"{kind}.{key}" for key, r in stack.resources(kind).items() if r["name"] == name]
    return address


def the_wait_of(stack, service: str) -> str:
    (wait,) = [dependency for dependency in dependencies(stack, service) if dependency.startswith(f"{WAIT}.")]
    return wait


def the_url_map(stack) -> str:
    """The URL map the traffic goes through (the one that is not the port-80 redirect)."""
    (address,) = [f"{URL_MAP}.{key}" for key, r in stack.resources(URL_MAP).items() if r["name"] == "inference-lb"]
    return address


@pytest.fixture(scope="module")
def plain(synth):
    return synth()


@pytest.fixture(scope="module")
def canary(synth):
    return synth(**CANARY)


@pytest.fixture(scope="module")
def promoted(synth):
    return synth(**PROMOTED)


@pytest.fixture(scope="module")
def moved(synth):
    return synth(**OTHER_REGION)


@pytest.mark.parametrize("shape", ["plain", "canary", "moved"])
def test_each_backend_waits_for_its_arms_service_and_the_wait_before_it(request, shape):
    stack = request.getfixturevalue(shape)

    for service in stack.resources(RUN).values():
        backend = named(stack, BACKEND, f"{service['name']}-backend")
        address = named(stack, RUN, service["name"])
        assert {address, the_wait_of(stack, address)} <= set(body(stack, backend)["depends_on"])


@pytest.mark.parametrize("shape", ["plain", "canary", "moved", "https_canary"])
def test_nothing_created_before_destroyed_depends_on_a_cloud_run_service(request, synth, shape):
    """Else Terraform would make the service create_before_destroy too, and a tainted service
    (a failed first revision) would be created again under its own name before the old one is
    deleted: the API refuses that with 409."""
    if shape == "https_canary":
        stack = synth(DOMAIN="api.example.com", IPV6="true", **CANARY)
    else:
        stack = request.getfixturevalue(shape)
    services = {f"{RUN}.{key}" for key in stack.resources(RUN)}

    cbd = {address for address in addresses(stack) if create_before_destroy(stack, address)}
    assert cbd, "the NEGs at least are create_before_destroy"
    assert {address: closure(stack, address) & services for address in cbd} == {a: set() for a in cbd}
    assert not any(create_before_destroy(stack, f"{BACKEND}.{key}") for key in stack.resources(BACKEND))


def test_a_new_canary_takes_traffic_only_after_its_service_started_and_waited(plain, canary):
    added = addresses(canary) - addresses(plain)
    service = named(canary, RUN, "inference-canary")
    backend = named(canary, BACKEND, "inference-canary-backend")
    url_map = the_url_map(canary)

    assert {service, the_wait_of(canary, service), backend} <= added
    # The URL map is changed in place, after the backend it now sends to, which comes after the
    # service and the wait.
    assert url_map == the_url_map(plain)
    assert backend in dependencies(canary, url_map)
    assert {service, the_wait_of(canary, service)} <= dependencies(canary, backend)


@pytest.mark.parametrize("after", ["plain", "promoted"], ids=["rolled back", "promoted"])
def test_a_removed_canarys_backend_goes_before_its_service_and_nothing_left_uses_either(request, canary, after):
    stack = request.getfixturevalue(after)
    removed = addresses(canary) - addresses(stack)
    service = named(canary, RUN, "inference-canary")
    backend = named(canary, BACKEND, "inference-canary-backend")

    assert {service, backend} <= removed
    # What the state records for the removed backend: it depended on the service, so Terraform
    # destroys the backend first, and the service is not deleted while a backend can send to it.
    assert service in closure(canary, backend)
    # The URL map that stays no longer reaches anything of the removed arm.
    assert closure(stack, the_url_map(stack)) & removed == set()


def test_a_promoted_model_takes_the_canarys_traffic_only_after_the_stable_service_runs_it(canary, promoted):
    service = named(promoted, RUN, "inference")
    backend = named(promoted, BACKEND, "inference-backend")

    # The stable service is updated in place, and the URL map that drops the canary comes after it.
    assert service in addresses(canary)
    assert {service, the_wait_of(promoted, service)} <= closure(promoted, the_url_map(promoted))
    assert service in dependencies(promoted, backend)


def test_a_region_change_adds_a_service_and_moves_the_backend_onto_it_before_the_old_one_goes(plain, moved):
    old_service, new_service = named(plain, RUN, "inference"), named(moved, RUN, "inference")
    backend = named(moved, BACKEND, "inference-backend")
    old_neg, new_neg = named(plain, NEG, "inference-neg-asia-northeast1"), named(moved, NEG, "inference-neg-europe-west1")

    # Two addresses: the new service is created beside the old one (Cloud Run names are per
    # region), not a replacement that Terraform would begin by deleting the old one.
    assert old_service != new_service
    assert old_service not in addresses(moved) and new_service not in addresses(plain)
    assert body(moved, new_service)["location"] == "europe-west1"
    # The backend service stays and is updated in place, after the new service started and
    # after the new NEG, which is created before the old one goes.
    assert backend == named(plain, BACKEND, "inference-backend")
    assert {new_service, the_wait_of(moved, new_service), new_neg} <= dependencies(moved, backend)
    assert old_neg == new_neg and create_before_destroy(moved, new_neg)
    # What the state records for the backend: it depended on the old service. A Terraform that
    # orders updates before deleting what they no longer use (or a deploy in two steps, see the
    # docs) deletes the old service only once the backend left it.
    assert old_service in dependencies(plain, named(plain, BACKEND, "inference-backend"))


@pytest.mark.parametrize("shape", ["plain", "canary", "moved"])
def test_state_from_before_the_region_key_moves_to_the_service_in_its_region(request, shape):
    from secure_endpoint.serving import UNKEYED_SERVICES

    stack = request.getfixturevalue(shape)
    region = {"plain": "asia-northeast1", "canary": "asia-northeast1", "moved": "europe-west1"}[shape]
    services = {service["name"]: named(stack, RUN, service["name"]) for service in stack.resources(RUN).values()}
    roles = {"inference": "stable", "inference-canary": "canary"}

    assert [move for move in stack.json["moved"] if move["to"].startswith(f"{RUN}.")] == [
        {"from": UNKEYED_SERVICES[roles[name]], "to": address} for name, address in sorted(services.items())
    ]
    assert all(f"_service-{region}_" in address for address in services.values())


# What the Terraform CLI makes of these changes: the stand-ins of tests/terraform_model.py keep
# every dependency and create_before_destroy of the stacks, and Terraform plans them offline.


@pytest.fixture
def workspace(tmp_path):
    from tests.terraform_model import TERRAFORM, Workspace

    assert shutil.which(TERRAFORM), "the Terraform CLI is needed: README, Deploying for real, step 1"
    return Workspace(tmp_path)


def test_terraform_creates_a_canary_service_and_waits_before_its_backend_and_the_url_map(workspace, plain, canary):

    workspace.deploy(plain.json)
    plan = workspace.plan(canary.json)
    service = named(canary, RUN, "inference-canary")
    backend, url_map = named(canary, BACKEND, "inference-canary-backend"), the_url_map(canary)

    assert plan.action(service) == plan.action(backend) == ["create"] and plan.action(url_map) == ["update"]
    assert plan.comes_after(node(backend), node(service))
    assert plan.comes_after(node(backend), node(the_wait_of(canary, service)))
    assert plan.comes_after(node(url_map), node(backend))


@pytest.mark.parametrize("after", ["plain", "promoted"], ids=["rolled back", "promoted"])
def test_terraform_deletes_a_removed_canarys_service_only_after_its_backend(request, workspace, canary, after):

    stack = request.getfixturevalue(after)
    workspace.deploy(canary.json)
    plan = workspace.plan(stack.json)
    service = named(canary, RUN, "inference-canary")
    backend, url_map = named(canary, BACKEND, "inference-canary-backend"), the_url_map(stack)

    assert plan.action(service) == plan.action(backend) == ["delete"] and plan.action(url_map) == ["update"]
    assert plan.comes_after(node(service, destroy=True), node(backend, destroy=True))
    # The reason a removal takes two steps with this Terraform (the deploy docs): it updates the
    # URL map only after deleting the backend, which the API refuses while the map uses it.
    assert plan.comes_after(node(url_map), node(backend, destroy=True))
    if after == "promoted":
        stable = named(stack, RUN, "inference")
        assert plan.action(stable) == ["update"] and plan.comes_after(node(url_map), node(stable))


def test_removing_a_canary_in_two_steps_moves_traffic_first_then_deletes_backend_before_service(workspace, canary, plain):

    workspace.deploy(canary.json)
    url_map = the_url_map(plain)
    first = workspace.plan(plain.json, target(url_map))
    assert first.actions == {data_name(url_map): ["update"]}
    workspace.deploy(plain.json, target(url_map))

    second = workspace.plan(plain.json)
    service = named(canary, RUN, "inference-canary")
    backend = named(canary, BACKEND, "inference-canary-backend")
    assert second.action(url_map) == ["no-op"] and second.action(backend) == second.action(service) == ["delete"]
    assert second.comes_after(node(service, destroy=True), node(backend, destroy=True))


def test_a_region_change_in_two_steps_moves_the_backend_to_the_new_service_before_the_old_goes(workspace, plain, moved):

    workspace.deploy(plain.json)
    old, new = named(plain, RUN, "inference"), named(moved, RUN, "inference")
    backend = named(moved, BACKEND, "inference-backend")
    first = workspace.plan(moved.json, target(backend))
    assert first.action(new) == ["create"] and first.action(backend) == ["update"]
    assert first.action(old) == ["no-op"], "the old service stays while the backend still uses it"
    assert first.comes_after(node(backend), node(new))
    workspace.deploy(moved.json, target(backend))

    second = workspace.plan(moved.json)
    assert second.action(old) == ["delete"] and second.action(backend) == ["no-op"]
    # In one step this Terraform deletes the old service before it moves the backend.
    assert one_step(plain, moved, workspace).comes_after(node(backend), node(old, destroy=True))


def one_step(before, after, workspace):
    """The plan of `before` -> `after` in one step, in a fresh directory beside `workspace`."""
    from tests.terraform_model import Workspace

    path = workspace.path / "one-step"
    path.mkdir()
    fresh = Workspace(path)
    fresh.deploy(before.json)
    return fresh.plan(after.json)


def test_terraform_deletes_a_tainted_service_before_creating_it_again(workspace, canary):
    """A failed first revision leaves the service tainted; created first under the same name,
    the new one would be refused (409). Nothing may make Terraform create it first."""
    workspace.deploy(canary.json)
    services = [named(canary, RUN, name) for name in ("inference", "inference-canary")]
    for service in services:
        workspace.run("taint", f"terraform_data.{data_name(service)}")

    plan = workspace.plan(canary.json)

    assert {service: plan.action(service) for service in services} == {s: ["delete", "create"] for s in services}
