"""The synthesized graph: every resource of the seed, corrected, wired by reference."""

import ipaddress
import json

import pytest

from secure_endpoint.allowlist import MAX_RANGES_PER_RULE
from secure_endpoint.armor import rules_from_terraform
from secure_endpoint.plan import ALLOW_PRIORITY_START, DEFAULT_RULE_PRIORITY, WAF_PRIORITY_START, plan_rules
from secure_endpoint.settings import EndpointSettings
from tests.infra import BASE_ENV
from secure_endpoint.edge import UNKEYED_CERTIFICATE
from secure_endpoint.image import artifact_registry_image, tag_warning
from secure_endpoint.plan import certificate_name
from secure_endpoint.serving import CONTAINER_PORT, HEALTH_PATH, INGRESS, MODEL_READER_ROLE, READY_PATH
from secure_endpoint.settings import SettingsError
from tests.infra import is_reference
from tests.test_allowlist import ranges

RUN = "google_cloud_run_v2_service"
NEG = "google_compute_region_network_endpoint_group"
POLICY = "google_compute_security_policy"
BACKEND = "google_compute_backend_service"
ADDRESS = "google_compute_global_address"
URL_MAP = "google_compute_url_map"
FORWARDING = "google_compute_global_forwarding_rule"
SA = "google_service_account"
CERTIFICATE = "google_compute_managed_ssl_certificate"
HTTPS_PROXY = "google_compute_target_https_proxy"
DOCKER_IMAGE = "google_artifact_registry_docker_image"
DIGEST = "sha256:" + "ab" * 32
# One synth for every non-default serving setting, the image pinned by digest among them.
TUNED = {"MIN_INSTANCES": "1", "MAX_INSTANCES": "10", "CONCURRENCY": "40", "DELETION_PROTECTION": "true",
         "IMAGE": f"europe-west1-docker.pkg.dev/other/images/inference@{DIGEST}"}  # fmt: skip


@pytest.fixture(scope="module")
def plain(synth):
    return synth()


@pytest.fixture(scope="module")
def https(synth):
    """HTTPS and IPv6 together: one synth covers both, `plain` covers neither."""
    return synth(DOMAIN="api.example.com", IPV6="true")


@pytest.fixture(scope="module")
def moving(synth):
    """Halfway through a change of domain: api.example.com's certificate is still live."""
    return synth(DOMAIN="api2.example.com", PREVIOUS_DOMAIN="api.example.com")


def container(stack):
    (only,) = stack.one(RUN)["template"]["containers"]
    return only


def test_the_seed_graph_is_all_there(plain):
    for kind in (ADDRESS, SA, RUN, NEG, POLICY, BACKEND, URL_MAP, "google_compute_target_http_proxy", FORWARDING,
                 "google_storage_bucket_iam_member"):  # fmt: skip
        assert len(plain.resources(kind)) == 1, kind


def test_the_address_is_a_static_external_ipv4(plain):
    address = plain.one(ADDRESS)

    assert (address["address_type"], address["ip_version"]) == ("EXTERNAL", "IPV4")


def test_cloud_run_admits_only_the_load_balancer(plain):
    service = plain.one(RUN)

    assert service["ingress"] == INGRESS == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    assert service["invoker_iam_disabled"] is True
    assert service["deletion_protection"] is False
    assert not plain.resources("google_cloud_run_service_iam_policy")


def test_cloud_runs_own_url_is_closed_by_the_typed_ga_field(plain):
    service = plain.one(RUN)

    assert service["default_uri_disabled"] is True
    # A GA field since provider 7.6: no preview launch stage, no second provider.
    assert "launch_stage" not in service and "lifecycle" not in service
    resources = [r for group in plain.json["resource"].values() for r in group.values()]
    assert resources and not [r for r in resources if "provider" in r]


def test_the_google_provider_alone_serves_every_google_resource(plain):
    required = plain.json["terraform"]["required_providers"]

    assert set(required) == set(plain.json["provider"]) == {"google", "time"}
    assert {kind.split("_")[0] for kind in plain.json["resource"]} == {"google", "time"}


def test_cloud_run_runs_the_image_with_the_model_uri(plain, synth):
    port = container(plain)["ports"]
    env = {item["name"]: item["value"] for item in container(plain)["env"]}

    assert port["container_port"] == CONTAINER_PORT == 5000
    default = EndpointSettings.from_env(BASE_ENV).image
    assert default == "asia-northeast1-docker.pkg.dev/p/inference-on-secure-cloud-run/inference:latest"
    assert plain.json["data"][DOCKER_IMAGE]  # the tag is resolved when planned, see below
    assert env["MODEL_URI"] == BASE_ENV["MODEL_URI"]
    assert container(synth(IMAGE="eu.gcr.io/x/y:1"))["image"] == "eu.gcr.io/x/y:1"


def test_cloud_run_resources_scaling_and_probes(plain, synth):
    template = plain.one(RUN)["template"]
    resources = container(plain)["resources"]

    assert resources["cpu_idle"] is True
    assert resources["startup_cpu_boost"] is True
    assert template["scaling"] == {"min_instance_count": 0, "max_instance_count": 3}
    assert template["max_instance_request_concurrency"] == 80
    assert container(plain)["startup_probe"]["http_get"]["path"] == READY_PATH
    assert container(plain)["liveness_probe"]["http_get"]["path"] == HEALTH_PATH
    assert template["service_account"] == plain.address(SA, "email")

    tuned = synth(**TUNED).one(RUN)
    assert tuned["template"]["scaling"] == {"min_instance_count": 1, "max_instance_count": 10}
    assert tuned["template"]["max_instance_request_concurrency"] == 40
    assert tuned["deletion_protection"] is True


def test_the_service_account_reads_the_model_bucket_only(plain):
    binding = plain.one("google_storage_bucket_iam_member")

    assert binding["bucket"] == "demo-models"
    assert binding["role"] == MODEL_READER_ROLE == "roles/storage.objectViewer"
    assert binding["member"] == plain.address(SA, "member")
    assert not plain.resources("google_project_iam_member")


def test_the_neg_is_serverless_and_points_at_the_service_in_its_region(plain):
    neg = plain.one(NEG)

    assert neg["network_endpoint_type"] == "SERVERLESS"
    assert neg["cloud_run"]["service"] == plain.one(RUN)["name"]
    assert neg["region"] == plain.one(RUN)["location"]


def test_the_neg_does_not_pass_create_before_destroy_on_to_the_service(plain):
    """Terraform gives a create_before_destroy resource's dependencies the same lifecycle: a
    service that depended so would, when replaced, be created again under its own name first (409)."""
    neg = plain.one(NEG)

    assert neg["lifecycle"] == {"create_before_destroy": True}
    assert f"${{{RUN}." not in json.dumps(neg)
    assert "lifecycle" not in plain.one(RUN) or "create_before_destroy" not in plain.one(RUN)["lifecycle"]


def test_the_backend_is_external_managed_with_the_policy_logs_and_no_rejected_fields(plain):
    backend = plain.one(BACKEND)

    assert backend["load_balancing_scheme"] == "EXTERNAL_MANAGED"
    assert backend["security_policy"] == plain.address(POLICY, "id")
    assert backend["backend"] == [{"group": plain.address(NEG, "id")}]
    assert backend["log_config"] == {"enable": True, "sample_rate": 1}
    for rejected in ("port_name", "timeout_sec", "health_checks"):
        assert rejected not in backend


def test_http_chain_is_wired_by_reference(plain):
    url_map = plain.one(URL_MAP)
    proxy = plain.one("google_compute_target_http_proxy")
    rule = plain.one(FORWARDING)

    assert url_map["default_service"] == plain.address(BACKEND, "id")
    assert proxy["url_map"] == plain.address(URL_MAP, "id")
    assert rule["target"] == plain.address("google_compute_target_http_proxy", "id")
    assert rule["ip_address"] == plain.address(ADDRESS, "address")
    assert (rule["load_balancing_scheme"], rule["ip_protocol"], rule["port_range"]) == ("EXTERNAL_MANAGED", "TCP", "80")


def test_policy_allows_the_ranges_then_denies_everyone_with_403(plain):
    rules = plain.policy_rules()
    allow = [r for r in rules if r["action"] == "allow"]

    assert [r["match"]["config"]["src_ip_ranges"] for r in allow] == [["203.0.113.4/32"]]
    assert allow[0]["priority"] == ALLOW_PRIORITY_START
    assert rules[-1]["priority"] == DEFAULT_RULE_PRIORITY == 2147483647
    assert rules[-1]["action"] == "deny(403)"
    assert rules[-1]["match"] == {"versioned_expr": "SRC_IPS_V1", "config": {"src_ip_ranges": ["*"]}}
    assert all(r["description"] and len(r["description"]) <= 64 for r in rules)


def test_policy_has_adaptive_protection_and_json_parsing(plain):
    policy = plain.one(POLICY)

    assert policy["adaptive_protection_config"]["layer_7_ddos_defense_config"]["enable"] is True
    assert policy["advanced_options_config"]["json_parsing"] == "STANDARD"


def test_waf_rules_come_before_the_allow_rules_and_can_be_turned_off(plain, synth):
    waf = [r for r in plain.policy_rules() if "expr" in r["match"]]

    assert waf and all(r["action"] == "deny(403)" for r in waf)
    assert all(WAF_PRIORITY_START <= r["priority"] < ALLOW_PRIORITY_START for r in waf)
    expressions = " ".join(r["match"]["expr"]["expression"] for r in waf)
    assert "sqli-v33-stable" in expressions and "cve-canary" in expressions

    assert not [r for r in synth(WAF_RULES="false").policy_rules() if "expr" in r["match"]]


def test_rate_limit_throttles_the_allowed_ranges(synth):
    rules = synth(RATE_LIMIT_PER_MINUTE="600").policy_rules()
    (throttle,) = [r for r in rules if r["action"] == "throttle"]

    assert throttle["match"]["config"]["src_ip_ranges"] == ["203.0.113.4/32"]
    options = throttle["rate_limit_options"]
    assert (options["conform_action"], options["exceed_action"], options["enforce_on_key"]) == ("allow", "deny(429)", "IP")
    assert options["rate_limit_threshold"] == {"count": 600, "interval_sec": 60}
    assert not [r for r in rules if r["action"] == "allow"]


@pytest.mark.parametrize("count", [1, 10, 11, 25])
def test_allowlist_is_split_into_rules_of_at_most_ten(synth, count):
    given = ranges(count, ipv6_every=3)

    rules = synth(ALLOWED_IP_RANGES=", ".join(given), IPV6="true").policy_rules()

    allow = [r for r in rules if r["action"] == "allow"]
    assert len(allow) == -(-count // MAX_RANGES_PER_RULE)
    assert all(len(r["match"]["config"]["src_ip_ranges"]) <= MAX_RANGES_PER_RULE for r in allow)
    assert [r["priority"] for r in allow] == sorted({r["priority"] for r in allow})
    assert sorted(ip for r in allow for ip in r["match"]["config"]["src_ip_ranges"]) == sorted(
        str(ipaddress.ip_network(r)) for r in given
    )


def test_https_adds_a_certificate_a_443_rule_on_the_same_address_and_redirects_80(https):
    certificate = https.one("google_compute_managed_ssl_certificate")
    proxy = https.one("google_compute_target_https_proxy")
    v4_address = https.address_of(ADDRESS, ip_version="IPV4")
    rules = {r["port_range"]: r for r in https.resources(FORWARDING).values() if r["ip_address"] == v4_address}
    maps = list(https.resources(URL_MAP).items())
    redirect = next(m for _, m in maps if "default_url_redirect" in m)
    serving_map = next(m for _, m in maps if "default_service" in m)
    (redirect_key,) = [k for k, m in maps if m is redirect]
    (http_proxy,) = https.resources("google_compute_target_http_proxy").values()

    assert certificate["managed"]["domains"] == ["api.example.com"]
    assert certificate["lifecycle"]["create_before_destroy"] is True
    assert proxy["ssl_certificates"] == [https.address("google_compute_managed_ssl_certificate", "id")]
    assert set(rules) == {"80", "443"}
    assert rules["443"]["ip_address"] == rules["80"]["ip_address"] == v4_address
    assert rules["443"]["target"] == https.address("google_compute_target_https_proxy", "id")
    assert redirect["default_url_redirect"]["https_redirect"] is True
    assert "default_service" not in redirect
    assert http_proxy["url_map"] == f"${{{URL_MAP}.{redirect_key}.id}}"
    assert serving_map["default_service"] == https.address(BACKEND, "id")


def test_ipv6_adds_an_address_and_forwarding_rules_on_it_for_each_port(plain, https):
    v6_address = https.address_of(ADDRESS, ip_version="IPV6")
    on_v6 = {r["port_range"]: r for r in https.resources(FORWARDING).values() if r["ip_address"] == v6_address}
    on_v4 = {r["port_range"]: r for r in https.resources(FORWARDING).values() if r["ip_address"] != v6_address}

    assert set(on_v6) == set(on_v4) == {"80", "443"}
    for port in ("80", "443"):
        assert on_v6[port]["target"] == on_v4[port]["target"]
        assert on_v6[port]["load_balancing_scheme"] == "EXTERNAL_MANAGED"
        assert on_v6[port]["name"] == f"{on_v4[port]['name']}-ipv6"
    assert https.json["output"]["load_balancer_ipv6"]["value"] == v6_address
    assert [a["ip_version"] for a in plain.resources(ADDRESS).values()] == ["IPV4"]
    assert len(plain.resources(FORWARDING)) == 1


def test_turning_ipv6_on_keeps_the_ipv4_resources_as_they_were(plain, https):
    for kind in (ADDRESS, FORWARDING):
        for key, resource in plain.resources(kind).items():
            assert https.resources(kind)[key] == resource


@pytest.mark.parametrize("ranges_", ["2001:db8::/48", "203.0.113.4, 2001:db8::1"])
def test_ipv6_ranges_without_ipv6_are_refused_naming_the_setting(ranges_):
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, "ALLOWED_IP_RANGES": ranges_})

    assert str(raised.value).startswith("ALLOWED_IP_RANGES: 2001:db8:")
    assert "IPV6=true" in str(raised.value)
    assert EndpointSettings.from_env({**BASE_ENV, "ALLOWED_IP_RANGES": ranges_, "IPV6": "true"}).ipv6


def test_ipv6_takes_only_true_or_false():
    with pytest.raises(SettingsError, match="IPV6: expected true or false, got 'maybe'"):
        EndpointSettings.from_env({**BASE_ENV, "IPV6": "maybe"})


def test_the_default_rule_is_never_synthesized_in_preview(plain, https):
    for stack in (plain, https):
        default = stack.policy_rules()[-1]
        assert default["priority"] == DEFAULT_RULE_PRIORITY
        assert not default.get("preview")


def test_a_domain_change_keeps_the_old_certificate_on_the_proxy_beside_the_new_one(https, moving):
    (old_key,) = https.resources(CERTIFICATE)
    certificates = moving.resources(CERTIFICATE)
    (new_key,) = set(certificates) - {old_key}

    # The old certificate is the very resource already deployed: same key, same name, untouched.
    assert certificates[old_key] == https.resources(CERTIFICATE)[old_key]
    assert certificates[old_key]["name"] == certificate_name("api.example.com")
    assert certificates[new_key]["managed"]["domains"] == ["api2.example.com"]
    assert certificates[new_key]["name"] == certificate_name("api2.example.com") != certificates[old_key]["name"]
    # The new one first: clients without SNI get it once it is ACTIVE; until then the old one serves.
    assert moving.one(HTTPS_PROXY)["ssl_certificates"] == [f"${{{CERTIFICATE}.{new_key}.id}}", f"${{{CERTIFICATE}.{old_key}.id}}"]
    assert moving.json["output"]["endpoint_url"]["value"] == "https://api2.example.com/inference/"


def test_state_with_the_unkeyed_certificate_moves_to_the_live_domains_certificate(https, moving):
    """The one certificate of an older state is the deployed domain's: DOMAIN's, or during a change PREVIOUS_DOMAIN's."""
    (kept,) = https.resources(CERTIFICATE)
    (live,) = [key for key, c in moving.resources(CERTIFICATE).items() if c["managed"]["domains"] == ["api.example.com"]]

    def certificate_moves(stack):
        return [move for move in stack.json["moved"] if move["from"].startswith(f"{CERTIFICATE}.")]

    assert certificate_moves(https) == [{"from": UNKEYED_CERTIFICATE, "to": f"{CERTIFICATE}.{kept}"}]
    assert certificate_moves(moving) == [{"from": UNKEYED_CERTIFICATE, "to": f"{CERTIFICATE}.{live}"}]
    assert not UNKEYED_CERTIFICATE.endswith(kept)


@pytest.mark.parametrize(
    "env, words",
    [
        ({"PREVIOUS_DOMAIN": "api.example.com"}, "PREVIOUS_DOMAIN: expected only beside DOMAIN, while moving to a new domain; got 'api.example.com' with DOMAIN unset"),
        ({"DOMAIN": "api.example.com", "PREVIOUS_DOMAIN": "api.example.com"}, "PREVIOUS_DOMAIN: expected the domain being replaced, not DOMAIN itself; got 'api.example.com'"),
        ({"DOMAIN": "api.example.com", "PREVIOUS_DOMAIN": "not a domain"}, "PREVIOUS_DOMAIN: expected a domain name such as api.example.com, got 'not a domain': lowercase letters, digits, hyphens and dots (RFC 1123)"),
    ],
)  # fmt: skip
def test_previous_domain_makes_sense_only_during_a_change(env, words):
    with pytest.raises(SettingsError) as raised:
        EndpointSettings.from_env({**BASE_ENV, **env})

    assert str(raised.value) == words


def test_https_uses_a_modern_tls_policy_and_port_80_answers_308(https):
    policy = https.one("google_compute_ssl_policy")
    (redirect,) = [m for m in https.resources(URL_MAP).values() if "default_url_redirect" in m]

    assert (policy["profile"], policy["min_tls_version"]) == ("MODERN", "TLS_1_2")
    assert https.one(HTTPS_PROXY)["ssl_policy"] == https.address("google_compute_ssl_policy", "id")
    # 308 keeps the method and body; 301 lets clients turn a POST into a GET.
    assert redirect["default_url_redirect"]["redirect_response_code"] == "PERMANENT_REDIRECT"


def test_the_service_waits_for_the_bucket_grant_to_propagate(plain):
    (key,) = plain.resources("time_sleep")
    wait = plain.one("time_sleep")

    # The docs say the service starts only after 90 s: a literal here, not MODEL_ACCESS_WAIT, so a
    # change to the wait fails until the docs (and this line) say the new figure.
    assert wait["create_duration"] == "90s"
    # Run again whenever the grant is made again (another bucket or account), not only once.
    assert wait["triggers"] == {"model_reader": plain.address("google_storage_bucket_iam_member", "id")}
    assert plain.one(RUN)["depends_on"] == [f"time_sleep.{key}"]
    assert plain.json["terraform"]["required_providers"]["time"] == {"source": "hashicorp/time", "version": "0.14.2"}


def test_the_startup_probe_allows_cloud_runs_whole_240_seconds(plain):
    probe = container(plain)["startup_probe"]

    assert probe["period_seconds"] * probe["failure_threshold"] == 240
    assert probe["timeout_seconds"] <= probe["period_seconds"]
    assert probe.get("initial_delay_seconds", 0) == 0


def test_the_neg_name_carries_the_region_and_a_new_one_comes_before_the_old_goes(plain):
    neg = plain.one(NEG)

    assert neg["name"] == "inference-neg-asia-northeast1"
    assert neg["lifecycle"] == {"create_before_destroy": True}


def test_an_image_tag_in_artifact_registry_is_resolved_to_its_digest_when_planned(plain):
    image = plain.json["data"][DOCKER_IMAGE]
    (key,) = image

    assert image[key] == {"project": "p", "location": "asia-northeast1", "repository_id": "inference-on-secure-cloud-run",
                          "image_name": "inference:latest"}  # fmt: skip
    assert container(plain)["image"] == f"${{data.{DOCKER_IMAGE}.{key}.self_link}}"


def test_an_image_pinned_by_digest_is_used_as_it_is(synth):
    pinned = synth(**TUNED)

    assert container(pinned)["image"] == TUNED["IMAGE"]
    assert DOCKER_IMAGE not in pinned.json.get("data", {})


@pytest.mark.parametrize(
    "image, resolved, warned",
    [
        ("asia-northeast1-docker.pkg.dev/p/repo/inference:v1", "inference:v1", "is given by tag, not by digest"),
        ("us-docker.pkg.dev/p/repo/team/inference", "team/inference", "is given by tag, not by digest"),
        (f"us-docker.pkg.dev/p/repo/inference@{DIGEST}", None, None),
        (f"us-docker.pkg.dev/p/repo/inference:v1@{DIGEST}", None, None),
        ("eu.gcr.io/x/y:1", None, "names a tag outside Artifact Registry"),
        ("nginx", None, "names a tag outside Artifact Registry"),
    ],
)  # fmt: skip
def test_image_references_are_read_as_a_registry_would(image, resolved, warned):
    parsed = artifact_registry_image(image)
    warning = tag_warning(image)

    assert (parsed.image_name if parsed else None) == resolved
    assert (warning is None) is (warned is None)
    if warned:
        assert warning.startswith(f"IMAGE {image} ") and warned in warning and "@sha256:" in warning


def test_outputs_tell_the_user_where_to_call(plain, https):
    outputs = plain.json["output"]

    assert set(outputs) == {"load_balancer_ip", "endpoint_url", "curl", "service_name", "security_policy_name"}
    assert outputs["load_balancer_ip"]["value"] == plain.address(ADDRESS, "address")
    assert outputs["endpoint_url"]["value"] == f"http://{plain.address(ADDRESS, 'address')}/inference/"
    curl = outputs["curl"]["value"]
    assert curl.startswith('${format("curl -X POST %s -H \'Content-Type: application/json\' -d \'%s\'", ')
    assert f"http://{plain.address(ADDRESS, 'address')}/inference/" in curl
    assert 'jsonencode({"sepal_length" = 5.1, "sepal_width" = 3.5, "petal_length" = 1.4, "petal_width" = 0.2})' in curl
    assert https.json["output"]["endpoint_url"]["value"] == "https://api.example.com/inference/"
    assert is_reference(outputs["service_name"]["value"])


def test_state_goes_to_gcs_when_a_bucket_is_named(plain, synth):
    assert synth(TF_STATE_BUCKET="my-state").json["terraform"]["backend"] == {
        "gcs": {"bucket": "my-state", "prefix": "inference-on-secure-cloud-run"}
    }
    assert "gcs" not in plain.json["terraform"].get("backend", {})


def test_the_provider_is_pinned(plain):
    assert plain.json["terraform"]["required_providers"]["google"] == {"source": "hashicorp/google", "version": "8.7.0"}
    assert plain.json["provider"]["google"] == [{"project": "p", "region": "asia-northeast1"}]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"RATE_LIMIT_PER_MINUTE": "600"},
        {"WAF_RULES": "false"},
        {"DOMAIN": "api.example.com", "IPV6": "true"},
    ],
)
def test_synthesized_rules_are_the_plan_that_verify_compares_with(synth, env):
    synthesized = rules_from_terraform(synth(**env).one(POLICY))

    assert synthesized == plan_rules(EndpointSettings.from_env({**BASE_ENV, **env}))
