"""`make verify` beyond the allowlist: rules that do not let anyone in yet, the action of the allow
rules, the forwarding rules on the endpoint's addresses and their proxies, port 80's redirect, the
HTTPS proxy's SSL policy, and other load balancers' backends onto the endpoint's Cloud Run service.
The real google-cloud-compute client against the local Compute API of tests/test_live.py."""

import pytest

from secure_endpoint.armor import RateLimit, Rule
from secure_endpoint.plan import (
    ADDRESS_NAME,
    ADDRESS_V6_NAME,
    BACKEND_NAME,
    NAME,
    POLICY_NAME,
    REDIRECT_MAP_NAME,
    SERVICE_NAME,
    SSL_POLICY_NAME,
    STABLE,
    URL_MAP_NAME,
    Arm,
    plan_rules,
)
from tests.test_live import (  # noqa: F401  (compute and env are fixtures)
    HTTP_PROXY,
    HTTPS_PROXY,
    LB_IPV4,
    LB_IPV6,
    REGION,
    REGION_LINK,
    SELF_LINK,
    backend_json,
    compute,
    edge_json,
    env,
    forwarding_rule_json,
    neg_json,
    policy_json,
    proxy_json,
    run,
    ssl_policy_json,
    url_map_json,
)

DOMAIN = {"DOMAIN": "api.example.com"}
STABLE_NEG = Arm(STABLE, "", 0).neg_name(REGION)
V4 = f"the address {ADDRESS_NAME} ({LB_IPV4})"
V6 = f"the address {ADDRESS_V6_NAME} ({LB_IPV6})"


def verify(factory, capsys) -> tuple[int, str]:
    code = run("verify", factory)
    return code, capsys.readouterr().out


# The allow rules


@pytest.mark.parametrize("action", ["allow", "throttle"])
def test_a_hand_added_allow_rule_in_preview_is_drift_in_plain_words(env, compute, capsys, action):
    rules = plan_rules(env()) + [
        Rule(priority=1500, action=action, description="partner trial", src_ip_ranges=("198.51.100.0/24",), preview=True)
    ]

    code, out = verify(compute(policy=policy_json(rules)), capsys)

    assert code == 1
    assert (f"rule 1500 ({action} in preview mode: partner trial) on 198.51.100.0/24 is live but not in the code; "
            "preview only logs, so it lets no one in yet, but taking it out of preview would let those ranges in") in out  # fmt: skip
    assert "198.51.100.0/24 is allowed by the live policy" not in out  # preview lets no one in
    assert "differs from the code in 1 ways" in out


def test_the_codes_allow_rule_put_in_preview_says_it_lets_no_one_in(env, compute, capsys):
    settings = env()
    rules = [Rule(**{**r.__dict__, "preview": True}) if r.priority == 1000 else r for r in plan_rules(settings)]

    code, out = verify(compute(policy=policy_json(rules)), capsys)

    assert code == 1
    assert ("rule 1000 (ALLOWED_IP_RANGES part 1 of 1) is in preview mode on the live policy: it only logs and "
            "lets none of 203.0.113.4/32 in; the code enforces it") in out  # fmt: skip
    assert "203.0.113.4/32 is allowed by the code but not by the live policy" in out


@pytest.mark.parametrize(
    "extra, live_action, words",
    [
        ({}, "throttle",
         "203.0.113.4/32 is let through by throttle (a rate limit, 429 above it) on the live policy; "
         "the code lets it through by allow (no rate limit)"),
        ({"RATE_LIMIT_PER_MINUTE": "600"}, "allow",
         "203.0.113.4/32 is let through by allow (no rate limit) on the live policy; "
         "the code lets it through by throttle (a rate limit, 429 above it)"),
    ],
    ids=["allow became throttle", "throttle became allow"],
)  # fmt: skip
def test_an_allow_rule_whose_action_changed_with_the_same_ranges_is_drift(env, compute, capsys, extra, live_action, words):
    settings = env(**extra)
    limit = RateLimit(count=600, interval_sec=60) if live_action == "throttle" else None
    rules = [Rule(**{**r.__dict__, "action": live_action, "rate_limit": limit}) if r.priority in (1000, 2000) else r
             for r in plan_rules(settings)]  # fmt: skip

    code, out = verify(compute(policy=policy_json(rules)), capsys)

    assert code == 1
    assert words in out
    assert "differs from the code in 1 ways" in out


# The forwarding rules and their proxies


@pytest.mark.parametrize(
    "extra", [{}, DOMAIN, {"IPV6": "true", "ALLOWED_IP_RANGES": "203.0.113.4 2001:db8::/32"}, {**DOMAIN, "IPV6": "true"}],
    ids=["http", "https", "http ipv6", "https ipv6"],
)  # fmt: skip
def test_the_codes_forwarding_rules_proxies_and_ssl_policy_are_in_sync(env, compute, capsys, extra):
    settings = env(**extra)

    code, out = verify(compute(policy=policy_json(plan_rules(settings))), capsys)

    assert (code, out.splitlines()[0].split(":")[0]) == (0, "in sync")


def test_an_extra_forwarding_rule_on_another_proxy_and_url_map_is_reported(env, compute, capsys):
    settings = env()
    rules, proxies = edge_json(settings)
    rules.append(forwarding_rule_json("debug-8080", LB_IPV4, 8080, "debug-proxy"))
    proxies["targetHttpProxies/debug-proxy"] = proxy_json("debug-proxy", "debug-map")

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies), capsys)

    assert code == 1
    assert (f"the forwarding rule debug-8080 on {V4} opens port 8080 and sends to the HTTP proxy debug-proxy "
            "and its URL map debug-map, which the code does not make (it opens only 80 there)") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


def test_an_extra_https_rule_is_reported_once_whatever_its_tls(env, compute, capsys):
    settings = env(**DOMAIN)
    rules, proxies = edge_json(settings)
    rules.append(forwarding_rule_json("old-tls", LB_IPV4, 8443, "old-proxy", "targetHttpsProxies"))
    proxies["targetHttpsProxies/old-proxy"] = proxy_json("old-proxy", URL_MAP_NAME)

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies), capsys)

    assert code == 1
    assert (f"the forwarding rule old-tls on {V4} opens port 8443 and sends to the HTTPS proxy old-proxy and its URL "
            f"map {URL_MAP_NAME}, which the code does not make (it opens only 80 and 443 there)") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


def test_a_forwarding_rule_on_another_address_is_not_the_endpoints(env, compute, capsys):
    settings = env()
    rules, proxies = edge_json(settings)
    rules.append(forwarding_rule_json("other-site", "198.51.100.20", 8080, "other-proxy"))

    code, _ = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies), capsys)

    assert code == 0


def test_port_80_sending_to_the_serving_map_with_a_domain_is_reported(env, compute, capsys):
    """Someone pointed port 80 at the serving URL map: the endpoint answers in clear text."""
    settings = env(**DOMAIN)
    rules, proxies = edge_json(settings)
    proxies[f"targetHttpProxies/{HTTP_PROXY}"] = proxy_json(HTTP_PROXY, URL_MAP_NAME)

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies), capsys)

    assert code == 1
    assert (f"the forwarding rule {NAME}-http on port 80 of {V4} sends to the HTTP proxy {HTTP_PROXY} and its URL map "
            f"{URL_MAP_NAME}; the code sends port 80 to an HTTP proxy and the URL map {REDIRECT_MAP_NAME}") in out  # fmt: skip


def test_a_missing_https_rule_and_a_port_range_are_reported(env, compute, capsys):
    settings = env(**DOMAIN)
    rules, proxies = edge_json(settings)
    rules = [rule for rule in rules if rule["portRange"] != "443-443"]
    rules.append({**forwarding_rule_json("wide", LB_IPV4, 0, HTTP_PROXY), "portRange": "8000-8010"})

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies), capsys)

    assert code == 1
    assert f"no forwarding rule opens port 443 on {V4}; the code serves HTTPS there" in out
    assert f"the forwarding rule wide on {V4} opens ports 8000-8010 and sends to the HTTP proxy {HTTP_PROXY}" in out
    assert "differs from the code in 2 ways" in out


IPV6 = {"IPV6": "true", "ALLOWED_IP_RANGES": "203.0.113.4 2001:db8::/32"}


def test_with_ipv6_a_missing_ipv6_address_is_drift(env, compute, capsys):
    settings = env(**IPV6)

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), address_v6=None), capsys)

    assert code == 1
    assert (f"the IPv6 address {ADDRESS_V6_NAME} does not exist, so the endpoint has no IPv6 way in; "
            "the code makes it (IPV6=true)") in out  # fmt: skip


def test_with_ipv6_missing_ipv6_forwarding_rules_are_drift(env, compute, capsys):
    settings = env(**IPV6)
    rules, proxies = edge_json(settings)
    code, out = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules[:1], proxies=proxies), capsys)

    assert code == 1
    assert f"no forwarding rule opens port 80 on {V6}; the code serves HTTP there" in out
    assert "differs from the code in 1 ways" in out


# Port 80's redirect and the HTTPS proxy's SSL policy


@pytest.mark.parametrize(
    "redirect, words",
    [
        ({"httpsRedirect": True, "redirectResponseCode": "MOVED_PERMANENTLY_DEFAULT"},
         "answers MOVED_PERMANENTLY_DEFAULT to HTTPS; the code answers 308 (PERMANENT_REDIRECT) to HTTPS"),
        ({"hostRedirect": "example.com", "redirectResponseCode": "PERMANENT_REDIRECT"},
         "answers PERMANENT_REDIRECT without switching to HTTPS"),
    ],
    ids=["301", "no https"],
)  # fmt: skip
def test_a_redirect_map_that_does_not_308_to_https_is_reported(env, compute, capsys, redirect, words):
    settings = env(**DOMAIN)
    maps = [url_map_json(), {"kind": "compute#urlMap", "name": REDIRECT_MAP_NAME, "defaultUrlRedirect": redirect}]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), url_maps=maps), capsys)

    assert code == 1
    assert f"the URL map {REDIRECT_MAP_NAME} of port 80 {words}" in out
    assert "differs from the code in 1 ways" in out


@pytest.mark.parametrize(
    "ssl_policy, policies, words",
    [
        (None, [],
         f"the HTTPS proxy {HTTPS_PROXY} has no SSL policy, so Google's default applies (COMPATIBLE profile, "
         f"TLS 1.0 or later); the code gives it {SSL_POLICY_NAME} (MODERN profile, TLS_1_2 or later)"),
        (SSL_POLICY_NAME, [ssl_policy_json(profile="COMPATIBLE", min_tls="TLS_1_0")],
         f"the SSL policy {SSL_POLICY_NAME} of the HTTPS proxy {HTTPS_PROXY} has the COMPATIBLE profile and "
         "TLS_1_0 or later; the code sets MODERN and TLS_1_2"),
        ("legacy-tls", [ssl_policy_json("legacy-tls")],
         f"the HTTPS proxy {HTTPS_PROXY} carries the SSL policy legacy-tls; the code gives it {SSL_POLICY_NAME}"),
    ],
    ids=["none", "weakened", "another"],
)  # fmt: skip
def test_the_https_proxy_must_carry_the_codes_ssl_policy(env, compute, capsys, ssl_policy, policies, words):
    settings = env(**DOMAIN)
    rules, proxies = edge_json(settings)
    proxies[f"targetHttpsProxies/{HTTPS_PROXY}"] = proxy_json(HTTPS_PROXY, URL_MAP_NAME, ssl_policy=ssl_policy)
    factory = compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies,
                      ssl_policies=policies or None)  # fmt: skip

    code, out = verify(factory, capsys)

    assert code == 1
    assert words in out
    assert "differs from the code in 1 ways" in out


def test_the_https_proxy_on_another_url_map_is_reported(env, compute, capsys):
    settings = env(**DOMAIN)
    rules, proxies = edge_json(settings)
    proxies[f"targetHttpsProxies/{HTTPS_PROXY}"] = proxy_json(HTTPS_PROXY, "old-lb", ssl_policy=SSL_POLICY_NAME)

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), forwarding_rules=rules, proxies=proxies), capsys)

    assert code == 1
    assert (f"the forwarding rule {NAME}-https on port 443 of {V4} sends to the HTTPS proxy {HTTPS_PROXY} and its "
            f"URL map old-lb; the code sends port 443 to an HTTPS proxy and the URL map {URL_MAP_NAME}") in out  # fmt: skip


# A second load balancer onto the same Cloud Run service


def test_another_backend_service_on_the_endpoints_neg_without_the_policy_is_reported(env, compute, capsys):
    settings = env()
    others = [backend_json(policy=None, name="side-door", neg=STABLE_NEG)]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others), capsys)

    assert code == 1
    assert (f"the backend service side-door sends requests to the serverless NEG {STABLE_NEG} ({SERVICE_NAME} in "
            f"{REGION}) without {POLICY_NAME} (its security policy is none): another load balancer reaches the "
            "service past Cloud Armor") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


def test_a_regional_backend_on_a_hand_made_neg_for_the_service_is_reported(env, compute, capsys):
    """The console's load balancer wizard makes its own serverless NEG for the chosen service."""
    settings = env()
    others = [backend_json(policy=None, name="regional-lb", neg="wizard-neg", region=REGION)]
    negs = [neg_json(STABLE_NEG, SERVICE_NAME), neg_json("wizard-neg", SERVICE_NAME), neg_json("shop-neg", "shop")]
    others.append(backend_json(policy=None, name="shop-backend", neg="shop-neg"))

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others, negs=negs), capsys)

    assert code == 1
    assert (f"the regional backend service regional-lb in {REGION} sends requests to the serverless NEG wizard-neg "
            f"({SERVICE_NAME} in {REGION}) without {POLICY_NAME}") in out  # fmt: skip
    assert "shop" not in out
    assert "differs from the code in 1 ways" in out


def test_another_backend_on_the_neg_that_carries_the_policy_is_not_drift(env, compute, capsys):
    settings = env()
    others = [backend_json(name="second-lb", neg=STABLE_NEG)]

    code, _ = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others), capsys)

    assert code == 0


def test_the_endpoints_own_unguarded_backend_is_said_once(env, compute, capsys):
    settings = env()

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), backend=backend_json(policy=None)), capsys)

    assert code == 1
    assert "differs from the code in 1 ways" in out
    assert f"{SELF_LINK}" not in out


# The policy by its identity (project, global, name), never by its name alone

POLICY_LINK = f"{SELF_LINK}/securityPolicies/{POLICY_NAME}"
REGIONAL_POLICY = f"{REGION_LINK}/securityPolicies/{POLICY_NAME}"
OTHER_PROJECT_POLICY = f"https://www.googleapis.com/compute/v1/projects/other/global/securityPolicies/{POLICY_NAME}"


@pytest.mark.parametrize(
    "attached, words",
    [
        (REGIONAL_POLICY, f"{REGIONAL_POLICY}, a regional policy that only shares the name of the code's global one"),
        (OTHER_PROJECT_POLICY, f"{OTHER_PROJECT_POLICY}, project other's policy of the same name"),
        (f"{POLICY_LINK}-old", f"{POLICY_LINK}-old"),
        (f"{SELF_LINK}/securityPolicies/old-{POLICY_NAME}", f"{SELF_LINK}/securityPolicies/old-{POLICY_NAME}"),
    ],
    ids=["regional, same name", "another project, same name", "name as a prefix", "name as a suffix"],
)  # fmt: skip
def test_the_endpoints_backend_must_carry_the_very_policy_the_code_declares(env, compute, capsys, attached, words):
    settings = env()

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), backend=backend_json(policy=attached)), capsys)

    assert code == 1
    assert f"the backend service {BACKEND_NAME} is not guarded by {POLICY_NAME}: its security policy is {words}" in out
    assert "differs from the code in 1 ways" in out


def test_a_regional_load_balancer_with_a_regional_policy_of_the_same_name_is_reported(env, compute, capsys):
    """A hand-made serverless NEG for the service, a regional backend service on it, and a regional
    policy named like the code's: a way in whose rules the code does not decide."""
    settings = env()
    others = [backend_json(policy=REGIONAL_POLICY, name="regional-lb", neg="wizard-neg", region=REGION)]
    negs = [neg_json(STABLE_NEG, SERVICE_NAME), neg_json("wizard-neg", SERVICE_NAME)]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others, negs=negs), capsys)

    assert code == 1
    assert (f"the regional backend service regional-lb in {REGION} sends requests to the serverless NEG wizard-neg "
            f"({SERVICE_NAME} in {REGION}) without {POLICY_NAME} (its security policy is {REGIONAL_POLICY}, a regional "
            "policy that only shares the name of the code's global one)") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


# Serverless NEGs that name the service through a URL mask


@pytest.mark.parametrize("mask", ["<service>.example.com", "example.com/<service>", "/<service>", "<tag>.example.com/<service>"])
def test_a_url_mask_neg_that_can_name_the_service_behind_an_unguarded_backend_is_reported(env, compute, capsys, mask):
    settings = env()
    others = [backend_json(policy=None, name="catch-all", neg="masked-neg")]
    negs = [neg_json(STABLE_NEG, SERVICE_NAME), neg_json("masked-neg", url_mask=mask)]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others, negs=negs), capsys)

    assert code == 1
    assert (f"the backend service catch-all sends requests to the serverless NEG masked-neg ({SERVICE_NAME} and "
            f"{SERVICE_NAME}-canary through its URL mask {mask} in {REGION}) without {POLICY_NAME}") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


@pytest.mark.parametrize(
    "neg",
    [
        neg_json("tags-neg", "shop", url_mask="<tag>.example.com"),
        neg_json("elsewhere-neg", url_mask="<service>.example.com", region="europe-west1"),
    ],
    ids=["mask parses the tag only", "another region's services"],
)  # fmt: skip
def test_a_url_mask_neg_that_cannot_reach_the_service_is_not_drift(env, compute, capsys, neg):
    settings = env()
    others = [{**backend_json(policy=None, name="shop-lb"),
               "backends": [{"group": f"{neg['region']}/networkEndpointGroups/{neg['name']}"}]}]  # fmt: skip
    negs = [neg_json(STABLE_NEG, SERVICE_NAME), neg]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others, negs=negs), capsys)

    assert code == 0, out


# Cloud CDN answers from its cache before the backend's policy


def test_cloud_cdn_on_the_guarded_backend_is_reported(env, compute, capsys):
    settings = env()

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), backend={**backend_json(), "enableCDN": True}), capsys)

    assert code == 1
    assert (f"the backend service {BACKEND_NAME} has Cloud CDN on: cached answers are served before Cloud Armor's "
            "backend policy is evaluated, so anyone gets what an allowed client fetched") in out  # fmt: skip
    assert "differs from the code in 1 ways" in out


def test_cloud_cdn_on_another_guarded_backend_that_reaches_the_service_is_reported(env, compute, capsys):
    settings = env()
    others = [{**backend_json(name="cached-lb", neg=STABLE_NEG), "enableCDN": True}]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), other_backends=others), capsys)

    assert code == 1
    assert "the backend service cached-lb, which reaches the service, has Cloud CDN on" in out
    assert "differs from the code in 1 ways" in out


def test_a_url_map_sending_to_another_projects_backend_of_the_same_name_is_reported(env, compute, capsys):
    """Cross-project service referencing: reading the backend by its name would read this project's."""
    settings = env()
    elsewhere = f"https://www.googleapis.com/compute/v1/projects/other/global/backendServices/{BACKEND_NAME}"
    maps = [{**url_map_json(), "defaultService": elsewhere}]

    code, out = verify(compute(policy=policy_json(plan_rules(settings)), url_maps=maps), capsys)

    assert code == 1
    assert (f"the URL map {URL_MAP_NAME} sends requests to {elsewhere}, which is not a backend service of project p; "
            "the code sends them only to its own backend services") in out  # fmt: skip
