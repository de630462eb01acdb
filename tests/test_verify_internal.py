"""`make verify` and `make endpoint` for EXPOSURE=internal: the real google-cloud-compute and
google-cloud-run clients (REST) against a local server answering with JSON of the APIs' shape,
one test per way the door could open."""

import ops
import pytest
from google.auth.credentials import AnonymousCredentials
from secure_endpoint import internal_plan as names
from secure_endpoint.armor import DEFAULT_RULE_PRIORITY, Rule
from secure_endpoint.live_internal import InternalLive
from secure_endpoint.plan import CANARY, STABLE, Arm
from secure_endpoint.settings import EndpointSettings

from tests.infra import BASE_ENV
from tests.test_internal_edge import CANARY as CANARY_ENV
from tests.test_internal_edge import INTERNAL
from tests.test_live import REGION, REGION_LINK, error_json, neg_json, rule_json, service_json

PROJECT = "/compute/v1/projects/p"
REGIONAL = f"{PROJECT}/regions/{REGION}"
POLICY_LINK = f"{REGION_LINK}/securityPolicies/{names.POLICY_NAME}"
ILB_IP = "10.10.0.50"
INTERNAL_SERVICE = {"ingress": names.INGRESS}


def policy_json(rules) -> dict:
    return {"kind": "compute#securityPolicy", "name": names.POLICY_NAME, "type": "CLOUD_ARMOR",
            "selfLink": POLICY_LINK, "region": REGION_LINK, "rules": [rule_json(r) for r in rules]}  # fmt: skip


def backend_json(arm: Arm, *, policy=POLICY_LINK, scheme=names.SCHEME, neg=None) -> dict:
    body = {"kind": "compute#backendService", "name": arm.backend_name, "loadBalancingScheme": scheme,
            "selfLink": f"{REGION_LINK}/backendServices/{arm.backend_name}", "region": REGION_LINK,
            "backends": [{"group": f"{REGION_LINK}/networkEndpointGroups/{neg or arm.neg_name(REGION)}"}]}  # fmt: skip
    if policy:
        body["securityPolicy"] = policy
    return body


def forwarding_rule_json(scheme: str, port: int, *, lb_scheme=names.SCHEME, ip=ILB_IP) -> dict:
    return {"kind": "compute#forwardingRule", "name": names.forwarding_rule_name(scheme), "IPAddress": ip,
            "IPProtocol": "TCP", "portRange": f"{port}-{port}", "loadBalancingScheme": lb_scheme,
            "region": REGION_LINK}  # fmt: skip


def neg_link_json(name: str, service: str) -> dict:
    return {**neg_json(name, service), "selfLink": f"{REGION_LINK}/networkEndpointGroups/{name}"}


@pytest.fixture
def internal_env(monkeypatch):
    def set_env(**extra) -> EndpointSettings:
        merged = {**BASE_ENV, **INTERNAL, **extra}
        for name, value in merged.items():
            monkeypatch.setenv(name, value)
        return EndpointSettings.from_env(merged)

    return set_env


@pytest.fixture
def live(httpserver):
    """Serves a private endpoint that matches the code; each keyword replaces one answer."""

    def serve(settings: EndpointSettings, *, rules=None, backends=None, other_backends=(), other_negs=(),
              services=None, forwarding_rules=None, policy_status=200):  # fmt: skip
        arms = [Arm(STABLE, "", 0)] + ([Arm(CANARY, "", 0)] if settings.canary_model_uri else [])
        rules = names.plan_internal_rules(settings) if rules is None else rules
        if policy_status == 200:
            httpserver.expect_request(
                f"{REGIONAL}/securityPolicies/{names.POLICY_NAME}"
            ).respond_with_json(policy_json(rules))
        else:
            httpserver.expect_request(
                f"{REGIONAL}/securityPolicies/{names.POLICY_NAME}"
            ).respond_with_json(error_json(policy_status), status=policy_status)
        backends = backends or {arm.backend_name: backend_json(arm) for arm in arms}
        for name, body in backends.items():
            httpserver.expect_request(f"{REGIONAL}/backendServices/{name}").respond_with_json(body)
        regional = [*backends.values(), *[b for b in other_backends if "region" in b]]
        httpserver.expect_request(f"{PROJECT}/aggregated/backendServices").respond_with_json(
            {
                "kind": "compute#backendServiceAggregatedList",
                "items": {
                    "global": {"backendServices": [b for b in other_backends if "region" not in b]},
                    f"regions/{REGION}": {"backendServices": regional},
                },
            }
        )
        negs = [neg_link_json(arm.neg_name(REGION), arm.service_name) for arm in arms] + list(
            other_negs
        )
        httpserver.expect_request(f"{PROJECT}/aggregated/networkEndpointGroups").respond_with_json(
            {
                "kind": "compute#networkEndpointGroupAggregatedList",
                "items": {f"regions/{REGION}": {"networkEndpointGroups": negs}},
            }
        )
        httpserver.expect_request(f"{REGIONAL}/addresses/{names.ADDRESS_NAME}").respond_with_json(
            {"kind": "compute#address", "name": names.ADDRESS_NAME, "address": ILB_IP}
        )
        if forwarding_rules is None:
            forwarding_rules = [forwarding_rule_json("http", 80)] + (
                [forwarding_rule_json("https", 443)] if settings.domain else []
            )
        httpserver.expect_request(f"{REGIONAL}/forwardingRules").respond_with_json(
            {"kind": "compute#forwardingRuleList", "items": forwarding_rules}
        )
        for arm in arms:
            body = (services or {}).get(arm.service_name) or service_json(
                name=arm.service_name, **INTERNAL_SERVICE
            )
            httpserver.expect_request(
                f"/v2/projects/p/locations/{REGION}/services/{arm.service_name}"
            ).respond_with_json(body)
        endpoint = httpserver.url_for("").rstrip("/")
        return lambda project: InternalLive(
            project, credentials=AnonymousCredentials(), api_endpoint=endpoint
        )

    return serve


def verify(factory) -> int:
    return ops.main(["verify"], internal_factory=factory)


def drift_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("  - ")]


@pytest.mark.parametrize(
    "extra",
    [{}, {"DOMAIN": "api.internal.example.com"}, CANARY_ENV],
    ids=["http", "https", "canary"],
)
def test_verify_in_sync_exits_0(internal_env, live, capsys, extra):
    factory = live(internal_env(**extra))
    assert verify(factory) == 0
    assert "in sync: the live regional policy inference-ilb-policy" in capsys.readouterr().out


def test_a_backend_created_without_the_policy_is_reported_loudly(internal_env, live, capsys):
    settings = internal_env()
    factory = live(
        settings, backends={"inference-backend": backend_json(Arm(STABLE, "", 0), policy=None)}
    )
    assert verify(factory) == 1
    (line,) = drift_lines(capsys)
    assert (
        "inference-backend has NO security policy" in line
        and "without this Cloud Armor policy" in line
    )


def test_a_backend_carrying_another_policy_is_reported(internal_env, live, capsys):
    other = f"{REGION_LINK}/securityPolicies/allow-all"
    factory = live(
        internal_env(),
        backends={"inference-backend": backend_json(Arm(STABLE, "", 0), policy=other)},
    )
    assert verify(factory) == 1
    assert [line for line in drift_lines(capsys) if "has " + other in line]


@pytest.mark.parametrize(
    "default, words",
    [
        (None, "default rule is missing"),
        (Rule(DEFAULT_RULE_PRIORITY, "allow", "default", ("*",)), "default rule is allow on ['*']"),
        (Rule(DEFAULT_RULE_PRIORITY, "deny(403)", "default", ("*",), preview=True), "in preview"),
    ],
    ids=["missing", "allows", "preview"],
)
def test_a_default_rule_that_does_not_deny_is_reported(internal_env, live, capsys, default, words):
    settings = internal_env()
    rules = [r for r in names.plan_internal_rules(settings) if r.priority != DEFAULT_RULE_PRIORITY]
    assert verify(live(settings, rules=rules + ([default] if default else []))) == 1
    assert [line for line in drift_lines(capsys) if words in line and "regional policy" in line]


def test_an_allow_rule_added_by_hand_is_reported(internal_env, live, capsys):
    settings = internal_env()
    rules = names.plan_internal_rules(settings) + [
        Rule(1500, "allow", "by hand", ("10.99.0.0/16",))
    ]
    assert verify(live(settings, rules=rules)) == 1
    (line,) = drift_lines(capsys)
    assert "has rule 1500 (allow 10.99.0.0/16)" in line


def test_an_allow_rule_removed_by_hand_is_reported(internal_env, live, capsys):
    settings = internal_env()
    rules = [r for r in names.plan_internal_rules(settings) if r.action != "allow"]
    assert verify(live(settings, rules=rules)) == 1
    assert [line for line in drift_lines(capsys) if "lacks rule 1000 (allow" in line]


def test_a_global_backend_on_the_services_neg_is_reported(internal_env, live, capsys):
    stable = Arm(STABLE, "", 0)
    external = {"kind": "compute#backendService", "name": "public-door", "loadBalancingScheme": "EXTERNAL_MANAGED",
                "selfLink": "https://www.googleapis.com/compute/v1/projects/p/global/backendServices/public-door",
                "backends": [{"group": f"{REGION_LINK}/networkEndpointGroups/{stable.neg_name(REGION)}"}]}  # fmt: skip
    assert verify(live(internal_env(), other_backends=[external])) == 1
    (line,) = drift_lines(capsys)
    assert "global backend service public-door (EXTERNAL_MANAGED) reaches the service" in line


def test_another_neg_of_the_service_with_its_own_backend_is_reported(internal_env, live, capsys):
    neg = neg_link_json("hand-made-neg", "inference")
    regional = {"kind": "compute#backendService", "name": "side-door", "loadBalancingScheme": "EXTERNAL_MANAGED",
                "selfLink": f"{REGION_LINK}/backendServices/side-door", "region": REGION_LINK,
                "backends": [{"group": neg["selfLink"]}]}  # fmt: skip
    assert verify(live(internal_env(), other_negs=[neg], other_backends=[regional])) == 1
    lines = drift_lines(capsys)
    assert [
        line
        for line in lines
        if "hand-made-neg also points at the Cloud Run service inference" in line
    ]
    assert [
        line
        for line in lines
        if "regional backend service side-door (EXTERNAL_MANAGED) reaches" in line
    ]


def test_a_neg_of_another_service_is_not_drift(internal_env, live, capsys):
    other = neg_link_json("unrelated-neg", "someone-else")
    assert verify(live(internal_env(), other_negs=[other])) == 0


@pytest.mark.parametrize(
    "service, words",
    [
        (
            service_json(ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"),
            "ingress INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER; expected INGRESS_TRAFFIC_INTERNAL_ONLY",
        ),
        (service_json(ingress="INGRESS_TRAFFIC_ALL"), "ingress INGRESS_TRAFFIC_ALL"),
        (
            service_json(default_uri_disabled=False, **INTERNAL_SERVICE),
            "answers on its run.app URL",
        ),
    ],
    ids=["external-load-balancers", "all", "run-app-url"],
)
def test_each_way_around_the_internal_load_balancer_is_reported(
    internal_env, live, capsys, service, words
):
    assert verify(live(internal_env(), services={"inference": service})) == 1
    assert [line for line in drift_lines(capsys) if words in line]


def test_a_forwarding_rule_of_the_code_made_external_is_reported(internal_env, live, capsys):
    factory = live(
        internal_env(),
        forwarding_rules=[
            forwarding_rule_json("http", 80, lb_scheme="EXTERNAL_MANAGED", ip="203.0.113.9")
        ],
    )
    assert verify(factory) == 1
    (line,) = drift_lines(capsys)
    assert (
        "inference-ilb-http is EXTERNAL_MANAGED on 203.0.113.9; expected INTERNAL_MANAGED on 10.10.0.50"
        in line
    )


def test_a_missing_regional_policy_is_one_line_and_exit_2(internal_env, live, capsys):
    assert verify(live(internal_env(), policy_status=404)) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "regional security policy inference-ilb-policy does not exist" in err
    )


def test_endpoint_prints_the_internal_address_name_and_a_curl_from_inside(
    internal_env, live, capsys
):
    factory = live(internal_env(DOMAIN="api.internal.example.com"))
    assert ops.main(["endpoint"], internal_factory=factory) == 0
    out = capsys.readouterr().out
    assert f"internal load balancer address: {ILB_IP}" in out
    assert "curl -X POST https://api.internal.example.com/inference/" in out
    assert "from a VM or a Cloud Run job in the VPC" in out
    assert f"api.internal.example.com resolves to {ILB_IP} inside inference-vpc" in out
    assert "dns_authorization_record" in out
