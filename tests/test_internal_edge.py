"""EXPOSURE=internal, synthesized: a regional internal Application Load Balancer in the VPC, the
regional Cloud Armor policy on every backend, the canary carried over, and no public way in."""

import json

import pytest
from secure_endpoint.armor import DEFAULT_RULE_PRIORITY, check_policy, decide, rules_from_terraform
from secure_endpoint.internal_edge import POLICY_ATTACHED
from secure_endpoint.internal_plan import INGRESS, POLICY_NAME
from secure_endpoint.plan import CANARY_HEADER, CANARY_HEADER_VALUE, DENY

INTERNAL = {
    "EXPOSURE": "internal", "NETWORK": "inference-vpc", "SUBNET": "inference-subnet",
    "ALLOWED_IP_RANGES": "10.10.0.0/24, 192.168.7.5",
}  # fmt: skip
PROXY = {"PROXY_SUBNET_CIDR": "10.129.0.0/23"}
CANARY = {"CANARY_MODEL_URI": "gs://demo-models/canary/model.onnx", "CANARY_PERCENT": "10"}
HTTPS = {"DOMAIN": "api.internal.example.com"}
BACKEND = "google_compute_region_backend_service"
POLICY = "google_compute_region_security_policy"
URL_MAP = "google_compute_region_url_map"
RULE = "google_compute_forwarding_rule"
# Nothing public: no global address, forwarding rule, backend, URL map, proxy or policy.
PUBLIC_KINDS = (
    "google_compute_global_address", "google_compute_global_forwarding_rule", "google_compute_backend_service",
    "google_compute_url_map", "google_compute_target_http_proxy", "google_compute_target_https_proxy",
    "google_compute_security_policy", "google_compute_managed_ssl_certificate", "google_compute_ssl_policy",
)  # fmt: skip


@pytest.fixture(scope="module")
def plain(synth):
    return synth(**INTERNAL)


@pytest.fixture(scope="module")
def full(synth):
    return synth(**INTERNAL, **PROXY, **CANARY, **HTTPS, GLOBAL_ACCESS="true")


def ref(kind: str, name: str, attribute: str) -> str:
    return f"${{{kind}.{name}.{attribute}}}"


@pytest.mark.parametrize("shape", ["plain", "full"])
def test_no_public_resource_is_synthesized(request, shape):
    stack = request.getfixturevalue(shape)
    assert [kind for kind in PUBLIC_KINDS if stack.resources(kind)] == []
    for rule in stack.resources(RULE).values():
        assert rule["load_balancing_scheme"] == "INTERNAL_MANAGED"


@pytest.mark.parametrize("shape", ["plain", "full"])
def test_every_service_takes_internal_traffic_only_and_closes_its_run_app_url(request, shape):
    services = request.getfixturevalue(shape).resources("google_cloud_run_v2_service").values()
    assert [
        (s["ingress"], s["default_uri_disabled"], s["invoker_iam_disabled"]) for s in services
    ] == [(INGRESS, True, True)] * len(services)


@pytest.mark.parametrize("shape", ["plain", "full"])
def test_every_backend_is_regional_internal_on_its_neg_with_the_one_policy_and_logs(request, shape):
    stack = request.getfixturevalue(shape)
    (policy_name,) = stack.resources(POLICY)
    negs = {
        ref("google_compute_region_network_endpoint_group", name, "id")
        for name in stack.resources("google_compute_region_network_endpoint_group")
    }
    backends = stack.resources(BACKEND)
    assert len(backends) == len(negs)
    for backend in backends.values():
        assert (
            backend["load_balancing_scheme"] == "INTERNAL_MANAGED" and backend["protocol"] == "HTTP"
        )
        assert backend["security_policy"] == ref(POLICY, policy_name, "self_link")
        assert backend["log_config"] == {"enable": True, "sample_rate": 1}
        (entry,) = backend["backend"]
        assert entry["group"] in negs and entry["balancing_mode"] != "RATE"
        assert "health_checks" not in backend and "timeout_sec" not in backend
        # On google-beta, which attaches the policy on create; the apply stops if it is not.
        assert backend["provider"] == "google-beta"
        assert backend["lifecycle"]["postcondition"][0]["condition"] == POLICY_ATTACHED
    assert {e["backend"][0]["group"] for e in backends.values()} == negs


def test_the_beta_provider_is_pinned_to_the_ga_providers_version_and_configured_alike(plain):
    providers = plain.json["terraform"]["required_providers"]
    assert providers["google-beta"] == {
        "source": "hashicorp/google-beta",
        "version": providers["google"]["version"],
    }
    assert plain.json["provider"]["google-beta"] == plain.json["provider"]["google"]
    # Nothing but the regional backend services uses it.
    users = [
        f"{kind}.{name}"
        for kind, named in plain.json["resource"].items()
        for name, body in named.items()
        if body.get("provider") == "google-beta"
    ]
    assert users and all(user.startswith(f"{BACKEND}.") for user in users)


@pytest.mark.parametrize("shape", ["plain", "full"])
def test_the_regional_policy_allows_the_list_and_explicitly_denies_everyone_else(request, shape):
    policy = request.getfixturevalue(shape).one(POLICY)
    assert (policy["name"], policy["type"]) == (POLICY_NAME, "CLOUD_ARMOR")
    assert "adaptive_protection_config" not in policy
    rules = rules_from_terraform(policy)
    check_policy(rules)
    default = [rule for rule in rules if rule.priority == DEFAULT_RULE_PRIORITY]
    assert [(r.action, r.src_ip_ranges) for r in default] == [(DENY, ("*",))]
    assert decide(rules, "10.10.0.9").allowed and decide(rules, "192.168.7.5").allowed
    assert decide(rules, "10.10.1.9").action == DENY and decide(rules, "203.0.113.4").action == DENY
    assert any(rule.expression and "evaluatePreconfiguredWaf" in rule.expression for rule in rules)


def test_allow_rules_hold_at_most_ten_ranges(synth):
    ranges = ", ".join(f"10.20.{i}.0/24" for i in range(0, 46, 2))
    stack = synth(**{**INTERNAL, "ALLOWED_IP_RANGES": ranges})
    sizes = [
        len(r.src_ip_ranges) for r in rules_from_terraform(stack.one(POLICY)) if r.action == "allow"
    ]
    assert sizes == [10, 10, 3]


def test_the_address_is_a_shared_internal_vip_in_the_subnet_and_every_rule_uses_it(full):
    (name, address) = next(iter(full.resources("google_compute_address").items()))
    assert (address["address_type"], address["purpose"]) == ("INTERNAL", "SHARED_LOADBALANCER_VIP")
    (subnet,) = full.json["data"]["google_compute_subnetwork"]
    assert address["subnetwork"] == f"${{data.google_compute_subnetwork.{subnet}.self_link}}"
    rules = full.resources(RULE)
    assert sorted(r["port_range"] for r in rules.values()) == ["443", "80"]
    for rule in rules.values():
        assert rule["ip_address"] == ref("google_compute_address", name, "address")
        assert rule["network"].startswith("${data.google_compute_network.")
        assert rule["subnetwork"].startswith("${data.google_compute_subnetwork.")
        assert rule["allow_global_access"] is True


def test_global_access_is_off_unless_asked(plain):
    assert [r.get("allow_global_access") for r in plain.resources(RULE).values()] == [None]


def test_the_proxy_only_subnet_is_made_when_asked_and_the_rules_wait_for_it(plain, full):
    assert plain.resources("google_compute_subnetwork") == {}
    (name, subnet) = next(iter(full.resources("google_compute_subnetwork").items()))
    assert (subnet["purpose"], subnet["role"], subnet["ip_cidr_range"]) == (
        "REGIONAL_MANAGED_PROXY",
        "ACTIVE",
        "10.129.0.0/23",
    )
    for rule in full.resources(RULE).values():
        assert rule["depends_on"] == [f"google_compute_subnetwork.{name}"]


def test_the_network_and_subnet_are_looked_up_by_name_or_self_link(synth):
    stack = synth(
        **{**INTERNAL, "NETWORK": "projects/host-project/global/networks/shared",
           "SUBNET": "projects/host-project/regions/asia-northeast1/subnetworks/ilb"}
    )  # fmt: skip
    (network,) = stack.json["data"]["google_compute_network"].values()
    (subnet,) = stack.json["data"]["google_compute_subnetwork"].values()
    assert (network["name"], network["project"]) == ("shared", "host-project")
    assert subnet == {"self_link": "projects/host-project/regions/asia-northeast1/subnetworks/ilb"}


def test_without_a_domain_port_80_serves_through_the_url_map(plain):
    (proxy,) = plain.resources("google_compute_region_target_http_proxy").values()
    (name,) = plain.resources(URL_MAP)
    assert proxy["url_map"] == ref(URL_MAP, name, "id")
    assert plain.resources("google_compute_region_target_https_proxy") == {}
    assert plain.resources("google_dns_managed_zone") == {}


def test_with_a_domain_https_has_a_dns_authorized_regional_certificate_and_port_80_redirects(full):
    (https,) = full.resources("google_compute_region_target_https_proxy").values()
    (cert_name, cert) = next(iter(full.resources("google_certificate_manager_certificate").items()))
    (auth_name, auth) = next(
        iter(full.resources("google_certificate_manager_dns_authorization").items())
    )
    assert https["certificate_manager_certificates"] == [
        ref("google_certificate_manager_certificate", cert_name, "id")
    ]
    assert cert["location"] == auth["location"] == "asia-northeast1"
    assert cert["managed"] == {
        "domains": [HTTPS["DOMAIN"]],
        "dns_authorizations": [
            ref("google_certificate_manager_dns_authorization", auth_name, "id")
        ],
    }
    assert (auth["domain"], auth["type"]) == (HTTPS["DOMAIN"], "PER_PROJECT_RECORD")
    ssl = full.one("google_compute_region_ssl_policy")
    assert (ssl["profile"], ssl["min_tls_version"]) == ("MODERN", "TLS_1_2")
    (http,) = full.resources("google_compute_region_target_http_proxy").values()
    redirect = [m for m in full.resources(URL_MAP).values() if "default_url_redirect" in m]
    assert (
        len(redirect) == 1
        and redirect[0]["default_url_redirect"]["redirect_response_code"] == "PERMANENT_REDIRECT"
    )
    assert http["url_map"].endswith(".id}") and "redirect" in http["url_map"]
    assert "dns_authorization_record" in full.json["output"]


def test_with_a_domain_a_private_zone_on_the_network_answers_with_the_internal_address(full):
    zone_name, zone = next(iter(full.resources("google_dns_managed_zone").items()))
    assert (zone["dns_name"], zone["visibility"]) == (f"{HTTPS['DOMAIN']}.", "private")
    (network,) = zone["private_visibility_config"]["networks"]
    assert network["network_url"].startswith("${data.google_compute_network.")
    record = full.one("google_dns_record_set")
    assert (record["type"], record["rrdatas"]) == (
        "A",
        [full.address("google_compute_address", "address")],
    )
    assert record["managed_zone"] == ref("google_dns_managed_zone", zone_name, "name")


def test_the_canary_split_and_header_route_carry_over(full):
    (serving,) = [m for m in full.resources(URL_MAP).values() if "path_matcher" in m]
    backends = full.resources(BACKEND)
    by_name = {body["name"]: ref(BACKEND, key, "id") for key, body in backends.items()}
    (matcher,) = serving["path_matcher"]
    weights = {
        w["backend_service"]: w["weight"]
        for w in matcher["default_route_action"]["weighted_backend_services"]
    }
    assert weights == {by_name["inference-backend"]: 90, by_name["inference-canary-backend"]: 10}
    (route,) = matcher["route_rules"]
    assert route["service"] == by_name["inference-canary-backend"]
    assert route["match_rules"][0]["header_matches"] == [
        {"header_name": CANARY_HEADER, "exact_match": CANARY_HEADER_VALUE}
    ]


def test_outputs_give_the_internal_address_and_url(plain, full):
    assert plain.json["output"]["load_balancer_ip"]["value"] == plain.address(
        "google_compute_address", "address"
    )
    assert (
        plain.json["output"]["endpoint_url"]["value"]
        == f"http://{plain.address('google_compute_address', 'address')}/inference/"
    )
    assert full.json["output"]["endpoint_url"]["value"] == f"https://{HTTPS['DOMAIN']}/inference/"
    assert json.dumps(plain.json["output"]).count("security_policy_name") == 1


@pytest.mark.parametrize(
    "env, extra",
    [
        ({}, set()),
        ({"DOMAIN": "api.example.com"}, set()),
        ({"EXPOSURE": "internal"}, set()),
        (
            {"EXPOSURE": "internal", "DOMAIN": "api.internal.example.com"},
            {"certificatemanager.googleapis.com", "dns.googleapis.com"},
        ),
    ],
)
def test_the_bootstrap_enables_certificate_manager_and_cloud_dns_only_for_an_internal_domain(
    env, extra
):
    from cdktn import App, Testing
    from secure_endpoint.bootstrap import APIS, BootstrapStack
    from secure_endpoint.bootstrap_settings import BOOTSTRAP_STACK, BootstrapSettings

    settings = BootstrapSettings.from_env({"PROJECT_ID": "p", "MODEL_BUCKET": "p-models", **env})
    stack = json.loads(Testing.synth(BootstrapStack(App(), BOOTSTRAP_STACK, settings=settings)))
    services = {s["service"] for s in stack["resource"]["google_project_service"].values()}
    assert services == set(APIS) | extra


def test_the_internal_stack_carries_no_raw_override():
    from cdktn import App

    from secure_endpoint.settings import STACK_NAME, EndpointSettings
    from secure_endpoint.stack import SecureEndpointStack
    from tests.infra import BASE_ENV
    from tests.test_escape_hatches import raw_overrides

    env = {**BASE_ENV, **INTERNAL, **PROXY, **CANARY, **HTTPS, "GLOBAL_ACCESS": "true"}
    stack = SecureEndpointStack(App(), STACK_NAME, settings=EndpointSettings.from_env(env))
    assert raw_overrides(stack) == {}
