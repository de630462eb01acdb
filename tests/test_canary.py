"""A canary beside the stable model: its settings, the second arm and the split in the synthesized
stack, and what `make check-ip`, `make endpoint` and `make verify` make of both shapes."""

import json
import subprocess
import sys

import pytest

import ops
from secure_endpoint.plan import (
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    POLICY_NAME,
    URL_MAP_NAME,
    plan_arms,
    plan_routing,
    plan_rules,
)
from secure_endpoint.settings import EndpointSettings, SettingsError
from secure_endpoint.synthesized import record_settings, stack_file, staleness
from tests.helpers import ROOT
from tests.infra import BASE_ENV
from tests.test_live import (  # noqa: F401  (compute and env are fixtures)
    LB_IPV4,
    SELF_LINK,
    backend_json,
    compute,
    env,
    policy_json,
    run,
    service_json,
    url_map_json,
)

RUN = "google_cloud_run_v2_service"
NEG = "google_compute_region_network_endpoint_group"
BACKEND = "google_compute_backend_service"
URL_MAP = "google_compute_url_map"
SA = "google_service_account"
GRANT = "google_storage_bucket_iam_member"
WAIT = "time_sleep"
POLICY = "google_compute_security_policy"
STABLE_MODEL = BASE_ENV["MODEL_URI"]
CANARY_MODEL = "gs://demo-models/models/iris/cd827946f6342979/model.onnx"
OTHER_BUCKET_MODEL = "gs://other-models/models/iris/cd827946f6342979/model.onnx"
# Two canary shapes, three synths in all: HTTP with the canary's model beside the stable one;
# HTTPS and IPv6 (the `https` settings of test_infra, plus a canary) with the model in another
# bucket; and the first with deletion protection.
CANARY = {"CANARY_MODEL_URI": CANARY_MODEL, "CANARY_PERCENT": "5"}
HTTPS = {"DOMAIN": "api.example.com", "IPV6": "true"}
CANARY_HTTPS = {**HTTPS, "CANARY_MODEL_URI": OTHER_BUCKET_MODEL, "CANARY_PERCENT": "20"}


@pytest.fixture(scope="module")
def plain(synth):
    return synth()


@pytest.fixture(scope="module")
def canary(synth):
    return synth(**CANARY)


@pytest.fixture(scope="module")
def https(synth):
    return synth(**HTTPS)


@pytest.fixture(scope="module")
def canary_https(synth):
    return synth(**CANARY_HTTPS)


def by_name(stack, kind: str) -> dict[str, dict]:
    return {resource["name"]: resource for resource in stack.resources(kind).values()}


def ref(stack, kind: str, name: str, attribute: str = "id") -> str:
    (key,) = [key for key, resource in stack.resources(kind).items() if resource["name"] == name]
    return f"${{{kind}.{key}.{attribute}}}"


def model_of(service: dict) -> str:
    (container,) = service["template"]["containers"]
    return {item["name"]: item["value"] for item in container["env"]}["MODEL_URI"]


# Settings


def test_without_canary_settings_there_is_one_arm_taking_everything():
    settings = EndpointSettings.from_env(BASE_ENV)

    assert (settings.canary_model_uri, settings.canary_percent) == (None, None)
    assert [(arm.role, arm.model_uri, arm.percent) for arm in plan_arms(settings)] == [("stable", STABLE_MODEL, 100)]


def test_canary_settings_give_two_arms_whose_shares_add_up_to_100():
    settings = EndpointSettings.from_env({**BASE_ENV, **CANARY})

    assert (settings.canary_model_uri, settings.canary_percent) == (CANARY_MODEL, 5)
    arms = plan_arms(settings)
    assert [(arm.role, arm.model_uri, arm.percent) for arm in arms] == [("stable", STABLE_MODEL, 95), ("canary", CANARY_MODEL, 5)]
    assert [arm.service_name for arm in arms] == ["inference", "inference-canary"]
    assert [arm.backend_name for arm in arms] == ["inference-backend", "inference-canary-backend"]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"CANARY_MODEL_URI": CANARY_MODEL},
         f"CANARY_PERCENT: required with CANARY_MODEL_URI='{CANARY_MODEL}'; expected the canary's share of traffic, a whole number from 1 to 99, got nothing"),
        ({"CANARY_PERCENT": "5"},
         "CANARY_MODEL_URI: required with CANARY_PERCENT='5'; expected the canary model's Cloud Storage URI"),
        ({**CANARY, "CANARY_PERCENT": "0"}, "CANARY_PERCENT: expected a whole number from 1 to 99, got '0'"),
        ({**CANARY, "CANARY_PERCENT": "100"}, "CANARY_PERCENT: expected a whole number from 1 to 99, got '100'"),
        ({**CANARY, "CANARY_PERCENT": "5%"}, "CANARY_PERCENT: expected a whole number from 1 to 99, got '5%'"),
        ({**CANARY, "CANARY_PERCENT": "2.5"}, "CANARY_PERCENT: expected a whole number from 1 to 99, got '2.5'"),
        ({**CANARY, "CANARY_MODEL_URI": "models/v2.onnx"},
         "CANARY_MODEL_URI: expected the model's Cloud Storage URI, gs://bucket/object, got 'models/v2.onnx'"),
        ({**CANARY, "CANARY_MODEL_URI": "gs://demo-models/models/"},
         "CANARY_MODEL_URI: expected the model's Cloud Storage URI, gs://bucket/object, got 'gs://demo-models/models/'"),
        ({**CANARY, "CANARY_MODEL_URI": f" {STABLE_MODEL} "},
         f"CANARY_MODEL_URI: expected another model than MODEL_URI, got the same '{STABLE_MODEL}'"),
    ],
    ids=["uri without percent", "percent without uri", "0", "100", "percent sign", "fraction", "local path",
         "folder", "same as MODEL_URI"],
)  # fmt: skip
def test_bad_canary_settings_are_refused_naming_the_variable_and_value(extra, words):
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, **extra})

    assert str(raised.value).startswith(words)


def test_the_settings_check_before_cdktf_refuses_a_bad_canary_in_one_line():
    environment = {"PATH": "/usr/bin:/bin", **BASE_ENV, "CANARY_MODEL_URI": CANARY_MODEL, "CANARY_PERCENT": "150"}

    result = subprocess.run(
        [sys.executable, str(ROOT / "cdktf" / "main.py"), "--check", "secure-inference"],
        env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode == 2
    assert result.stderr == "error: CANARY_PERCENT: expected a whole number from 1 to 99, got '150'\n"


# The synthesized stack


@pytest.mark.parametrize("shape", ["canary", "canary_https"])
def test_the_canary_is_a_second_locked_service_with_its_own_model_and_the_same_image(request, shape):
    stack = request.getfixturevalue(shape)
    services = by_name(stack, RUN)
    stable, canary_service = services["inference"], services["inference-canary"]
    expected = CANARY_MODEL if shape == "canary" else OTHER_BUCKET_MODEL

    assert set(services) == {"inference", "inference-canary"}
    assert (model_of(stable), model_of(canary_service)) == (STABLE_MODEL, expected)
    for service in (stable, canary_service):
        assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
        assert service["default_uri_disabled"] is True and service["invoker_iam_disabled"] is True
        assert "provider" not in service
    # The stable arm resolves the tag once; the canary runs that very digest.
    (image,) = stable["template"]["containers"]
    (canary_image,) = canary_service["template"]["containers"]
    assert canary_image["image"] == image["image"] and image["image"].startswith("${data.google_artifact_registry_docker_image.")
    assert len(stack.json["data"]["google_artifact_registry_docker_image"]) == 1
    assert {key: v for key, v in canary_service["template"].items() if key != "containers" and key != "service_account"} == {
        key: v for key, v in stable["template"].items() if key != "containers" and key != "service_account"
    }


@pytest.mark.parametrize("shape", ["canary", "canary_https"])
def test_each_arm_has_its_own_account_grant_wait_neg_and_backend(request, shape):
    stack = request.getfixturevalue(shape)
    canary_bucket = "demo-models" if shape == "canary" else "other-models"

    accounts = by_name_of(stack, SA, "account_id")
    assert set(accounts) == {"inference-run", "inference-canary-run"}
    grants = {grant["member"]: grant for grant in stack.resources(GRANT).values()}
    stable_member = f"${{{SA}.{key_of(stack, SA, 'account_id', 'inference-run')}.member}}"
    canary_member = f"${{{SA}.{key_of(stack, SA, 'account_id', 'inference-canary-run')}.member}}"
    assert (grants[stable_member]["bucket"], grants[canary_member]["bucket"]) == ("demo-models", canary_bucket)
    assert {g["role"] for g in grants.values()} == {"roles/storage.objectViewer"}

    services = {s["name"]: (key, s) for key, s in stack.resources(RUN).items()}
    waits = stack.resources(WAIT)
    for name, member in (("inference", stable_member), ("inference-canary", canary_member)):
        _, service = services[name]
        (wait_ref,) = service["depends_on"]
        wait = waits[wait_ref.split(".")[1]]
        grant_key = [k for k, g in stack.resources(GRANT).items() if g["member"] == member][0]
        assert wait["triggers"] == {"model_reader": f"${{{GRANT}.{grant_key}.id}}"}
        assert wait["create_duration"] == "90s"

    negs = by_name(stack, NEG)
    assert set(negs) == {"inference-neg-asia-northeast1", "inference-canary-neg-asia-northeast1"}
    canary_neg = negs["inference-canary-neg-asia-northeast1"]
    # By value, like the stable arm's: a reference would hand create_before_destroy to the service.
    assert canary_neg["cloud_run"]["service"] == "inference-canary"
    assert canary_neg["region"] == "asia-northeast1"
    assert canary_neg["lifecycle"] == {"create_before_destroy": True}
    backends = by_name(stack, BACKEND)
    assert set(backends) == {"inference-backend", "inference-canary-backend"}
    assert backends["inference-canary-backend"]["backend"] == [{"group": ref(stack, NEG, "inference-canary-neg-asia-northeast1")}]


def test_the_canary_arm_is_the_stable_arms_construct_again(canary):
    """The same five resources under `serving` and `serving-canary`; only the stable arm looks the
    image up (in `data`), and the canary runs what it found."""

    def children(prefix: str) -> set[tuple[str, str]]:
        return {
            (kind, key[len(prefix) + 1 :].rsplit("_", 1)[0])
            for kind, resources in canary.json["resource"].items()
            for key in resources
            if key.startswith(f"{prefix}_")
        }

    assert children("serving-canary") == children("serving")
    assert len(children("serving")) == 5


def by_name_of(stack, kind: str, attribute: str) -> dict[str, dict]:
    return {resource[attribute]: resource for resource in stack.resources(kind).values()}


def key_of(stack, kind: str, attribute: str, value: str) -> str:
    (key,) = [key for key, resource in stack.resources(kind).items() if resource[attribute] == value]
    return key


@pytest.mark.parametrize("shape", ["plain", "https", "canary", "canary_https"])
def test_every_backend_any_url_map_can_reach_carries_the_one_policy(request, shape):
    stack = request.getfixturevalue(shape)
    policy = stack.address(POLICY, "id")
    backends = stack.resources(BACKEND)

    reached = set(backend_references(stack.resources(URL_MAP)))

    assert reached == {f"${{{BACKEND}.{key}.id}}" for key in backends}
    assert [b["security_policy"] for b in backends.values()] == [policy] * len(backends)


def backend_references(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("default_service", "service", "backend_service"):
                yield value
            else:
                yield from backend_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from backend_references(item)


@pytest.mark.parametrize("shape, percent", [("canary", 5), ("canary_https", 20)])
def test_the_serving_url_map_splits_by_weight_and_routes_the_header_to_the_canary(request, shape, percent):
    stack = request.getfixturevalue(shape)
    url_map = by_name(stack, URL_MAP)[URL_MAP_NAME]
    stable_backend, canary_backend = ref(stack, BACKEND, "inference-backend"), ref(stack, BACKEND, "inference-canary-backend")
    split = [{"backend_service": stable_backend, "weight": 100 - percent}, {"backend_service": canary_backend, "weight": percent}]

    # The API refuses a default service beside weighted backend services.
    assert "default_service" not in url_map
    assert url_map["default_route_action"] == {"weighted_backend_services": split}
    assert url_map["host_rule"] == [{"hosts": ["*"], "path_matcher": "split"}]
    (matcher,) = url_map["path_matcher"]
    assert "default_service" not in matcher
    assert matcher["default_route_action"] == {"weighted_backend_services": split}
    (route,) = matcher["route_rules"]
    assert route["service"] == canary_backend
    assert route["match_rules"] == [
        {"prefix_match": "/", "header_matches": [{"header_name": CANARY_HEADER, "exact_match": CANARY_HEADER_VALUE}]}
    ]


def test_with_a_domain_the_split_is_on_https_and_port_80_only_redirects(canary_https):
    split_map = ref(canary_https, URL_MAP, URL_MAP_NAME)
    redirect = by_name(canary_https, URL_MAP)["inference-http-redirect"]

    (https_proxy,) = canary_https.resources("google_compute_target_https_proxy").values()
    (http_proxy,) = canary_https.resources("google_compute_target_http_proxy").values()
    assert https_proxy["url_map"] == split_map
    assert http_proxy["url_map"] == ref(canary_https, URL_MAP, "inference-http-redirect")
    assert set(redirect) == {"name", "description", "default_url_redirect"}


def test_without_a_domain_the_split_is_on_the_http_url_map(canary):
    (http_proxy,) = canary.resources("google_compute_target_http_proxy").values()

    assert http_proxy["url_map"] == ref(canary, URL_MAP, URL_MAP_NAME)
    assert not canary.resources("google_compute_target_https_proxy")


@pytest.mark.parametrize("without, with_", [("plain", "canary"), ("https", "canary_https")])
def test_adding_a_canary_changes_nothing_of_the_stable_arm_but_the_url_map(request, without, with_):
    """Same construct ids, names and attributes: a plan adds the canary and updates the URL map in
    place, and replaces nothing that serves today."""
    before, after = request.getfixturevalue(without).json, request.getfixturevalue(with_).json

    for kind, resources in before["resource"].items():
        for key, resource in resources.items():
            if kind == URL_MAP and resource["name"] == URL_MAP_NAME:
                assert after["resource"][kind][key]["name"] == URL_MAP_NAME
                continue
            assert after["resource"][kind][key] == resource, (kind, key)
    assert after["data"] == before["data"]
    assert after["provider"] == before["provider"] and after["terraform"] == before["terraform"]
    assert {k: v for k, v in after["output"].items() if not k.startswith("canary_")} == before["output"]


def test_without_canary_settings_the_url_map_sends_everything_to_the_one_backend(plain):
    url_map = by_name(plain, URL_MAP)[URL_MAP_NAME]

    assert url_map["default_service"] == ref(plain, BACKEND, "inference-backend")
    assert not {"default_route_action", "host_rule", "path_matcher"} & set(url_map)
    assert len(plain.resources(RUN)) == 1


# One synth for two settings that touch nothing else: deletion protection and the sampled log.
TUNED_CANARY = {**CANARY, "DELETION_PROTECTION": "true", "PREDICTION_LOG_RATE": "0.05"}


def test_deletion_protection_guards_the_stable_service_only(synth):
    stack = synth(**TUNED_CANARY)
    services = by_name(stack, RUN)

    # The canary goes away at promotion: protected, it would make that apply fail.
    assert services["inference"]["deletion_protection"] is True
    assert services["inference-canary"]["deletion_protection"] is False


def test_both_arms_log_the_same_sample_of_predictions_and_only_when_asked(synth, canary):
    for name, service in by_name(synth(**TUNED_CANARY), RUN).items():
        env = {item["name"]: item["value"] for item in service["template"]["containers"][0]["env"]}
        assert env["PREDICTION_LOG_RATE"] == "0.05", name
    for service in by_name(canary, RUN).values():
        assert "PREDICTION_LOG_RATE" not in {item["name"] for item in service["template"]["containers"][0]["env"]}


@pytest.mark.parametrize("raw", ["2", "-0.1", "nan", "one percent", "1e400"])
def test_a_prediction_log_rate_that_is_not_a_fraction_is_refused_at_synth(raw):
    with pytest.raises(SettingsError, match=rf"PREDICTION_LOG_RATE: expected a fraction from 0 to 1, such as 0.01, got '{raw}'"):
        EndpointSettings.from_env({**BASE_ENV, "PREDICTION_LOG_RATE": raw})


def test_outputs_name_the_canary_and_a_curl_that_reaches_it(canary):
    outputs = canary.json["output"]

    assert outputs["canary_service_name"]["value"] == ref(canary, RUN, "inference-canary", "name")
    assert "-H '%s: %s'" in outputs["canary_curl"]["value"]
    assert f"{CANARY_HEADER}\", \"{CANARY_HEADER_VALUE}\"" in outputs["canary_curl"]["value"]


@pytest.mark.parametrize("shape, env_", [("plain", {}), ("canary", CANARY), ("canary_https", CANARY_HTTPS)])
def test_the_synthesized_split_is_the_plan_that_verify_compares_with(request, shape, env_):
    stack = request.getfixturevalue(shape)
    names = {f"${{{BACKEND}.{key}.id}}": b["name"] for key, b in stack.resources(BACKEND).items()}
    url_map = by_name(stack, URL_MAP)[URL_MAP_NAME]
    expected = plan_routing(EndpointSettings.from_env({**BASE_ENV, **env_}))

    if "path_matcher" in url_map:
        (matcher,) = url_map["path_matcher"]
        weights = {names[w["backend_service"]]: w["weight"] for w in matcher["default_route_action"]["weighted_backend_services"]}
        header_route = names[matcher["route_rules"][0]["service"]]
    else:
        weights, header_route = {names[url_map["default_service"]]: 100}, None

    assert (weights, header_route) == (expected.weights, expected.header_route)


# check-ip


def test_check_ip_judges_the_one_policy_of_the_canary_shape(tmp_path, canary, monkeypatch, capsys):
    for name, value in {**BASE_ENV, **CANARY}.items():
        monkeypatch.setenv(name, value)
    path = stack_file(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(canary.json))
    settings = EndpointSettings.from_env({**BASE_ENV, **CANARY})
    record_settings(tmp_path, settings)

    assert staleness(tmp_path, EndpointSettings.from_env(BASE_ENV)) == "the settings changed since the last synth"
    assert ops.main(["--out", str(tmp_path), "check-ip", "203.0.113.4"]) == 0
    assert ops.main(["--out", str(tmp_path), "check-ip", "198.51.100.7"]) == 1
    out = capsys.readouterr().out
    assert "synthesizing first" not in out
    assert "203.0.113.4  allow" in out and "198.51.100.7  deny(403)" in out


# endpoint and verify against the Compute and Cloud Run Admin APIs' JSON


def split_url_map_json(weights, *, header_to="inference-canary-backend", fallback=None):
    def weighted(pairs):
        return {"weightedBackendServices": [{"backendService": f"{SELF_LINK}/backendServices/{name}", "weight": weight}
                                            for name, weight in pairs]}  # fmt: skip

    matcher = {"name": "split", "defaultRouteAction": weighted(weights)}
    if header_to:
        matcher["routeRules"] = [{
            "priority": 1, "service": f"{SELF_LINK}/backendServices/{header_to}",
            "matchRules": [{"prefixMatch": "/", "headerMatches": [{"headerName": CANARY_HEADER, "exactMatch": CANARY_HEADER_VALUE}]}],
        }]  # fmt: skip
    return {"kind": "compute#urlMap", "name": URL_MAP_NAME, "defaultRouteAction": weighted(fallback or weights),
            "hostRules": [{"hosts": ["*"], "pathMatcher": "split"}], "pathMatchers": [matcher]}  # fmt: skip


CANARY_BACKEND = backend_json(name="inference-canary-backend")
CANARY_SERVICE = service_json(name="inference-canary", model_uri=CANARY_MODEL)
IN_SYNC_SPLIT = [("inference-backend", 95), ("inference-canary-backend", 5)]


@pytest.mark.parametrize("domain", [{}, {"DOMAIN": "api.example.com"}], ids=["http", "https"])
def test_verify_in_sync_with_a_canary_exits_0_and_names_the_split(env, compute, capsys, domain):
    settings = env(**CANARY, **domain)
    maps = [split_url_map_json(IN_SYNC_SPLIT), url_map_json("inference-http-redirect", default=None)]
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=maps, backends=[CANARY_BACKEND], services=[CANARY_SERVICE])

    assert run("verify", factory) == 0
    out = capsys.readouterr().out
    assert "in sync:" in out
    assert f"and so is the split: inference-backend 95%, inference-canary-backend 5%; {CANARY_HEADER}: 1 to inference-canary-backend" in out


def test_verify_reports_a_split_a_header_route_and_a_canary_that_differ_from_the_code(env, compute, capsys):
    settings = env(**CANARY)
    maps = [split_url_map_json([("inference-backend", 50), ("inference-canary-backend", 50)], header_to=None,
                               fallback=IN_SYNC_SPLIT)]  # fmt: skip
    backends = [backend_json(name="inference-canary-backend", policy=None)]
    services = [service_json(name="inference-canary", model_uri=OTHER_BUCKET_MODEL, ingress="INGRESS_TRAFFIC_ALL")]
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=maps, backends=backends, services=services)

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert (f"the URL map {URL_MAP_NAME} splits requests inference-backend 50%, inference-canary-backend 50%; "
            "the code splits them inference-backend 95%, inference-canary-backend 5%") in out  # fmt: skip
    assert f"the URL map {URL_MAP_NAME} has no route for {CANARY_HEADER}: 1; the code sends it to inference-canary-backend" in out
    assert f"the backend service inference-canary-backend is not guarded by {POLICY_NAME}: its security policy is none" in out
    assert "the Cloud Run service inference-canary admits traffic from anywhere" in out
    assert f"the Cloud Run service inference-canary loads {OTHER_BUCKET_MODEL}; the code gives it {CANARY_MODEL}" in out
    assert "differs from the code in 5 ways" in out


def test_verify_reports_a_fallback_default_that_skips_the_split(env, compute, capsys):
    settings = env(**CANARY)
    maps = [split_url_map_json(IN_SYNC_SPLIT, fallback=[("inference-backend", 100)])]
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=maps, backends=[CANARY_BACKEND], services=[CANARY_SERVICE])

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert (f"the URL map {URL_MAP_NAME}'s default for hosts no host rule matches sends requests inference-backend 100%; "
            "the code sends them inference-backend 95%, inference-canary-backend 5%") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


def test_verify_reports_a_canary_the_url_map_does_not_send_to(env, compute, capsys):
    settings = env(**CANARY)
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=[url_map_json()], services=[CANARY_SERVICE])

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert (f"the URL map {URL_MAP_NAME} splits requests inference-backend 100%; "
            "the code splits them inference-backend 95%, inference-canary-backend 5%") in out  # fmt: skip
    assert f"the URL map {URL_MAP_NAME} has no route for {CANARY_HEADER}: 1; the code sends it to inference-canary-backend" in out
    assert "differs from the code in 2 ways" in out


def test_verify_after_promotion_reports_the_live_canary_until_it_is_deployed(env, compute, capsys):
    """MODEL_URI took the canary's model and the canary settings are gone, but nobody deployed yet:
    the live split, the stable service's old model and the still-reachable canary are all reported."""
    settings = env(MODEL_URI=CANARY_MODEL)
    services = [service_json(name="inference-canary", model_uri=CANARY_MODEL, default_uri_disabled=False)]
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=[split_url_map_json(IN_SYNC_SPLIT)],
                      backends=[CANARY_BACKEND], services=services)  # fmt: skip

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert f"the Cloud Run service inference loads {STABLE_MODEL}; the code gives it {CANARY_MODEL}" in out
    assert "the Cloud Run service inference-canary's run.app URL is open" in out
    assert (f"the URL map {URL_MAP_NAME} splits requests inference-backend 95%, inference-canary-backend 5%; "
            "the code splits them inference-backend 100%") in out  # fmt: skip
    assert f"the URL map {URL_MAP_NAME} sends {CANARY_HEADER}: 1 to inference-canary-backend; the code sends it nowhere special" in out
    assert "default for hosts no host rule matches" not in out  # the same split as above, said once
    assert "differs from the code in 4 ways" in out


def test_verify_without_a_canary_says_nothing_of_a_split(env, compute, capsys):
    settings = env()
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=[url_map_json()])

    assert run("verify", factory) == 0
    assert "and so is the split" not in capsys.readouterr().out


def test_endpoint_shows_the_split_each_arms_model_and_a_curl_for_the_canary(env, compute, capsys):
    env(**CANARY)
    factory = compute(address=LB_IPV4, url_maps=[split_url_map_json(IN_SYNC_SPLIT)], services=[CANARY_SERVICE])

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert f"traffic, as the URL map {URL_MAP_NAME} sends it:\n" in out
    assert f"     95%  inference         {STABLE_MODEL}\n" in out
    assert f"      5%  inference-canary  {CANARY_MODEL}\n" in out
    assert f"  {CANARY_HEADER}: 1 always reaches inference-canary\n" in out
    assert f"canary only: curl -X POST http://{LB_IPV4}/inference/ -H '{CANARY_HEADER}: 1' -H 'Content-Type: application/json'" in out


def test_endpoint_without_a_canary_shows_the_one_model_taking_everything(env, compute, capsys):
    env()
    factory = compute(address=LB_IPV4)

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert f"    100%  inference  {STABLE_MODEL}\n" in out
    assert CANARY_HEADER not in out


def test_endpoint_names_a_backend_this_code_does_not_make(env, compute, capsys):
    env()
    url_map = split_url_map_json([("inference-backend", 90), ("legacy", 10)], header_to=None)
    factory = compute(address=LB_IPV4, url_maps=[url_map])

    assert run("endpoint", factory) == 0
    assert "     10%  legacy (a backend service this code does not make)\n" in capsys.readouterr().out
