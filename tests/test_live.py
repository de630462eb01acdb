"""`make endpoint` and `make verify`: the real google-cloud-compute and google-cloud-run clients
(REST) against a local HTTP server that answers the Compute and Cloud Run Admin APIs' calls with
JSON of the APIs' shape."""

import json
import os
import subprocess
import sys

import pytest
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from werkzeug import Response

import ops
from secure_endpoint.armor import Rule
from secure_endpoint.plan import (
    ADDRESS_NAME,
    ADDRESS_V6_NAME,
    BACKEND_NAME,
    CANARY,
    HTTP_PROXY_NAME,
    HTTPS_PROXY_NAME,
    NAME,
    POLICY_NAME,
    REDIRECT_MAP_NAME,
    SERVICE_NAME,
    SSL_POLICY_NAME,
    STABLE,
    URL_MAP_NAME,
    Arm,
    certificate_name,
    plan_rules,
)
from secure_endpoint.settings import EndpointSettings
from tests.helpers import ROOT, free_port
from tests.infra import BASE_ENV

API = "/compute/v1/projects/p/global"
RUN_API = f"/v2/projects/p/locations/asia-northeast1/services/{SERVICE_NAME}"
SELF_LINK = "https://www.googleapis.com/compute/v1/projects/p/global"
REGION = "asia-northeast1"
REGION_LINK = f"https://www.googleapis.com/compute/v1/projects/p/regions/{REGION}"
LB_IPV4, LB_IPV6 = "203.0.113.10", "2001:db8::10"
HTTP_PROXY, HTTPS_PROXY = HTTP_PROXY_NAME, HTTPS_PROXY_NAME
ARMS = {arm.backend_name: arm for arm in (Arm(STABLE, "", 0), Arm(CANARY, "", 0))}
STABLE_NEG = Arm(STABLE, "", 0).neg_name(REGION)


def rule_json(rule: Rule) -> dict:
    if rule.expression is not None:
        match = {"expr": {"expression": rule.expression}}
    else:
        match = {"versionedExpr": "SRC_IPS_V1", "config": {"srcIpRanges": list(rule.src_ip_ranges)}}
    body = {"kind": "compute#securityPolicyRule", "priority": rule.priority, "action": rule.action,
            "description": rule.description, "preview": rule.preview, "match": match}  # fmt: skip
    if rule.rate_limit is not None:
        limit = rule.rate_limit
        body["rateLimitOptions"] = {
            "rateLimitThreshold": {"count": limit.count, "intervalSec": limit.interval_sec},
            "conformAction": limit.conform_action, "exceedAction": limit.exceed_action,
            "enforceOnKey": limit.enforce_on_key,
            **({"enforceOnKeyName": limit.enforce_on_key_name} if limit.enforce_on_key_name else {}),
        }  # fmt: skip
    return body


def policy_json(rules, *, adaptive=True) -> dict:
    return {
        "kind": "compute#securityPolicy",
        "id": "5001",
        "creationTimestamp": "2026-11-02T09:00:00.000-08:00",
        "name": POLICY_NAME,
        "selfLink": f"{SELF_LINK}/securityPolicies/{POLICY_NAME}",
        "type": "CLOUD_ARMOR",
        "fingerprint": "abc=",
        "labelFingerprint": "42WmSpB8rSM=",
        "advancedOptionsConfig": {"jsonParsing": "STANDARD", "logLevel": "NORMAL"},
        "rules": [rule_json(rule) for rule in rules],
        "adaptiveProtectionConfig": {"layer7DdosDefenseConfig": {"enable": adaptive}},
    }


def backend_json(policy=f"{SELF_LINK}/securityPolicies/{POLICY_NAME}", name=BACKEND_NAME, *, neg=None, region=None):
    """A backend service, regional when `region` is given; an arm's backend has that arm's
    serverless NEG unless `neg` names another."""
    scope = f"https://www.googleapis.com/compute/v1/projects/p/regions/{region}" if region else SELF_LINK
    body = {"kind": "compute#backendService", "id": "6001", "creationTimestamp": "2026-11-02T09:00:00.000-08:00",
            "name": name, "selfLink": f"{scope}/backendServices/{name}", "loadBalancingScheme": "EXTERNAL_MANAGED",
            "protocol": "HTTP", "port": 80, "portName": "http", "timeoutSec": 30, "sessionAffinity": "NONE",
            "affinityCookieTtlSec": 0, "connectionDraining": {"drainingTimeoutSec": 0}, "fingerprint": "Zm9v",
            "logConfig": {"enable": True, "sampleRate": 1}}  # fmt: skip
    neg = neg or (ARMS[name].neg_name(REGION) if name in ARMS else None)
    if neg:
        body["backends"] = [{"group": f"{REGION_LINK}/networkEndpointGroups/{neg}", "balancingMode": "UTILIZATION",
                             "capacityScaler": 1}]  # fmt: skip
    if region:
        body["region"] = scope
    if policy:
        body["securityPolicy"] = policy
    return body


def neg_json(name: str, service: str = "", *, url_mask: str = "", region: str = REGION) -> dict:
    """A serverless NEG for a Cloud Run service named outright, or by the URL mask's <service>."""
    run = {key: value for key, value in (("service", service), ("urlMask", url_mask)) if value}
    region_link = f"https://www.googleapis.com/compute/v1/projects/p/regions/{region}"
    return {"kind": "compute#networkEndpointGroup", "name": name, "networkEndpointType": "SERVERLESS",
            "region": region_link, "cloudRun": run, "selfLink": f"{region_link}/networkEndpointGroups/{name}",
            "id": "7001", "creationTimestamp": "2026-11-02T09:00:00.000-08:00", "size": 0}  # fmt: skip


def forwarding_rule_json(name: str, ip: str, port: int, proxy: str, kind="targetHttpProxies") -> dict:
    """As the API gives it: the address as the IP, the port as a range."""
    return {"kind": "compute#forwardingRule", "name": name, "IPAddress": ip, "IPProtocol": "TCP",
            "portRange": f"{port}-{port}", "target": f"{SELF_LINK}/{kind}/{proxy}",
            "loadBalancingScheme": "EXTERNAL_MANAGED"}  # fmt: skip


def proxy_json(name: str, url_map: str, *, ssl_policy: str | None = None) -> dict:
    body = {"name": name, "urlMap": f"{SELF_LINK}/urlMaps/{url_map}"}
    if ssl_policy:
        body["sslPolicy"] = f"{SELF_LINK}/sslPolicies/{ssl_policy}"
    return body


def ssl_policy_json(name=SSL_POLICY_NAME, profile="MODERN", min_tls="TLS_1_2") -> dict:
    return {"kind": "compute#sslPolicy", "name": name, "profile": profile, "minTlsVersion": min_tls}


def edge_json(settings: EndpointSettings) -> tuple[list[dict], dict[str, dict]]:
    """The forwarding rules and proxies of a deployment that matches the code."""
    addresses = [("", LB_IPV4)] + ([("-ipv6", LB_IPV6)] if settings.ipv6 else [])
    rules = [forwarding_rule_json(f"{NAME}-http{suffix}", ip, 80, HTTP_PROXY) for suffix, ip in addresses]
    if not settings.domain:
        return rules, {f"targetHttpProxies/{HTTP_PROXY}": proxy_json(HTTP_PROXY, URL_MAP_NAME)}
    rules += [forwarding_rule_json(f"{NAME}-https{suffix}", ip, 443, HTTPS_PROXY, "targetHttpsProxies")
              for suffix, ip in addresses]  # fmt: skip
    return rules, {
        f"targetHttpProxies/{HTTP_PROXY}": proxy_json(HTTP_PROXY, REDIRECT_MAP_NAME),
        f"targetHttpsProxies/{HTTPS_PROXY}": proxy_json(HTTPS_PROXY, URL_MAP_NAME, ssl_policy=SSL_POLICY_NAME),
    }


def service_json(*, ingress="INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER", default_uri_disabled=True, invoker_iam_disabled=True,
                 name=SERVICE_NAME, model_uri=BASE_ENV["MODEL_URI"]):  # fmt: skip
    """A Cloud Run Admin API v2 Service; the API leaves false booleans out, as here."""
    body = {"name": f"projects/p/locations/asia-northeast1/services/{name}", "ingress": ingress,
            "launchStage": "GA", "uri": f"https://{name}-abc123-an.a.run.app",
            "template": {"containers": [{"image": "asia-northeast1-docker.pkg.dev/p/r/inference@sha256:" + "ab" * 32,
                                         "env": [{"name": "MODEL_URI", "value": model_uri}]}]}}  # fmt: skip
    if default_uri_disabled:
        body["defaultUriDisabled"] = True
    if invoker_iam_disabled:
        body["invokerIamDisabled"] = True
    return body


def url_map_json(name=URL_MAP_NAME, *, default=BACKEND_NAME, path_rules=()):
    body = {"kind": "compute#urlMap", "name": name}
    if default:
        body["defaultService"] = f"{SELF_LINK}/backendServices/{default}"
    else:
        body["defaultUrlRedirect"] = {"httpsRedirect": True, "redirectResponseCode": "PERMANENT_REDIRECT"}
    if path_rules:
        body["hostRules"] = [{"hosts": ["*"], "pathMatcher": "paths"}]
        body["pathMatchers"] = [{"name": "paths", "defaultService": body.get("defaultService", ""),
                                 "pathRules": [{"paths": [path], "service": link} for path, link in path_rules]}]  # fmt: skip
    # A URL map's tests name a backend only as an expectation: verify must not follow them.
    body["tests"] = [{"host": "api.example.com", "path": "/", "service": f"{SELF_LINK}/backendServices/elsewhere"}]
    return body


@pytest.fixture
def env(monkeypatch):
    def set_env(**extra):
        for name, value in {**BASE_ENV, **extra}.items():
            monkeypatch.setenv(name, value)
        return EndpointSettings.from_env({**BASE_ENV, **extra})

    return set_env


def error_json(status: int, message: str = "denied or missing") -> dict:
    return {"error": {"code": status, "message": message, "errors": [{"message": message, "domain": "global"}]}}


# The fake serves lists in pages this long, so verify must follow nextPageToken to see everything.
PAGE_SIZE = 2
# The scopes an aggregated list names on every page: the real API lists each of the project's
# regions, with a NO_RESULTS_ON_PAGE warning where a page has nothing for one.
SCOPES = ("global", f"regions/{REGION}", "regions/europe-west1", "regions/us-central1")
API_PREFIXES = ("/compute/v1/", "/v2/")


class StrictApi:
    """What the real Compute and Cloud Run Admin APIs do that a lenient fake would not: only GET is
    served on the paths verify reads (anything else 405, an unknown path 404, both as the APIs'
    JSON errors), lists come in pages with nextPageToken, and an unknown pageToken is a 400."""

    def __init__(self, httpserver):
        self.server = httpserver
        self.paths: set[str] = set()
        httpserver.respond_nohandler = self._no_handler

    def get(self, path: str):
        self.paths.add(path)
        return self.server.expect_request(path, method="GET")

    def json(self, path: str, body: dict, status: int = 200) -> None:
        self.get(path).respond_with_json(body, status=status)

    def pages(self, path: str, kind: str, items: list[dict]) -> None:
        self.get(path).respond_with_handler(lambda request: self._page(request, path, kind, items))

    def aggregated(self, path: str, kind: str, field: str, scoped: dict[str, list[dict]]) -> None:
        flat = [(scope, item) for scope in SCOPES for item in scoped.get(scope, [])]
        self.get(path).respond_with_handler(lambda request: self._aggregated_page(request, path, kind, field, flat))

    def _window(self, request, total: int) -> tuple[int, str | None] | Response:
        token = request.args.get("pageToken", "")
        start = int(token.removeprefix("page-")) if token.startswith("page-") and token[5:].isdigit() else None
        if token and (start is None or start >= total):
            return Response(json.dumps(error_json(400, f"Invalid value for field 'pageToken': '{token}'.")),
                            status=400, content_type="application/json")  # fmt: skip
        start = start or 0
        following = start + PAGE_SIZE
        return start, (f"page-{following}" if following < total else None)

    def _page(self, request, path: str, kind: str, items: list[dict]) -> Response:
        window = self._window(request, len(items))
        if isinstance(window, Response):
            return window
        start, token = window
        body = {"kind": kind, "id": path, "selfLink": f"https://www.googleapis.com{path}",
                "items": items[start : start + PAGE_SIZE]}  # fmt: skip
        if token:
            body["nextPageToken"] = token
        return Response(json.dumps(body), content_type="application/json")

    def _aggregated_page(self, request, path: str, kind: str, field: str, flat: list) -> Response:
        window = self._window(request, len(flat))
        if isinstance(window, Response):
            return window
        start, token = window
        page = flat[start : start + PAGE_SIZE]
        items = {}
        for scope in SCOPES:
            found = [item for name, item in page if name == scope]
            items[scope] = {field: found} if found else {"warning": {
                "code": "NO_RESULTS_ON_PAGE", "message": f"There are no results for scope '{scope}' on this page.",
                "data": [{"key": "scope", "value": scope}]}}  # fmt: skip
        body = {"kind": kind, "id": path, "selfLink": f"https://www.googleapis.com{path}", "items": items}
        if token:
            body["nextPageToken"] = token
        return Response(json.dumps(body), content_type="application/json")

    def _no_handler(self, request, extra_message: str = "") -> Response:
        if request.path in self.paths:
            body, status = error_json(405, f"Method {request.method} is not allowed on {request.path}"), 405
        else:
            body, status = error_json(404, f"The resource '{request.path}' was not found"), 404
        return Response(json.dumps(body), status=status, content_type="application/json")

    def requests(self) -> list:
        """Every request made to the Compute and Cloud Run Admin APIs."""
        return [request for request, _ in self.server.log if request.path.startswith(API_PREFIXES)]


@pytest.fixture
def compute(httpserver):
    """Serves the Compute and Cloud Run Admin API paths with a deployment that matches the code;
    each keyword replaces one answer (`policy_status` answers the policy's path with that error).
    After the test, every request made to the APIs must have been a GET: verify only reads."""
    api = StrictApi(httpserver)

    def serve(*, policy=None, backend=None, address=LB_IPV4, address_v6=LB_IPV6, certificate=None, policy_status=200,
              service=None, url_maps=None, backends=(), certificates=(), credentials=None, services=(),
              forwarding_rules=None, proxies=None, ssl_policies=None, other_backends=(), negs=None):  # fmt: skip
        """`forwarding_rules` and `proxies` (by "kind/name") default to the code's for the settings
        in the environment; `other_backends` are listed with the project's backend services only."""
        if policy is not None or policy_status != 200:
            body = policy if policy_status == 200 else error_json(policy_status)
            api.json(f"{API}/securityPolicies/{POLICY_NAME}", body, status=policy_status)
        listed = [backend or backend_json(), *backends]
        for body in listed:
            api.json(f"{API}/backendServices/{body['name']}", body)
        regional = [body for body in other_backends if "region" in body]
        api.aggregated("/compute/v1/projects/p/aggregated/backendServices", "compute#backendServiceAggregatedList",
                       "backendServices",
                       {"global": listed + [b for b in other_backends if b not in regional],
                        f"regions/{REGION}": [b for b in regional if b["region"] == REGION_LINK],
                        **{scope: [b for b in regional if b["region"].endswith(f"/{scope}")]
                           for scope in SCOPES if scope.startswith("regions/") and scope != f"regions/{REGION}"}})  # fmt: skip
        if negs is None:
            negs = [neg_json(arm.neg_name(REGION), arm.service_name) for name, arm in ARMS.items()
                    if any(body["name"] == name for body in listed)]  # fmt: skip
        by_scope = {scope: [n for n in negs if n["region"].endswith(f"/{scope}")] for scope in SCOPES}
        api.aggregated("/compute/v1/projects/p/aggregated/networkEndpointGroups",
                       "compute#networkEndpointGroupAggregatedList", "networkEndpointGroups", by_scope)  # fmt: skip
        settings = EndpointSettings.from_env()
        default_rules, default_proxies = edge_json(settings)
        api.pages(f"{API}/forwardingRules", "compute#forwardingRuleList",
                  default_rules if forwarding_rules is None else forwarding_rules)  # fmt: skip
        for path, body in (default_proxies if proxies is None else proxies).items():
            api.json(f"{API}/{path}", body)
        for body in ssl_policies or [ssl_policy_json()]:
            api.json(f"{API}/sslPolicies/{body['name']}", body)
        api.json(RUN_API, service or service_json())
        for body in services:
            api.json(f"/v2/{body['name']}", body)
        for body in url_maps or [url_map_json(), url_map_json(REDIRECT_MAP_NAME, default=None)]:
            api.json(f"{API}/urlMaps/{body['name']}", body)
        for name, value in ((ADDRESS_NAME, address), (ADDRESS_V6_NAME, address_v6)):
            if value is None:
                api.json(f"{API}/addresses/{name}", error_json(404), status=404)
            else:
                api.json(f"{API}/addresses/{name}", {"kind": "compute#address", "name": name, "address": value,
                                                      "selfLink": f"{SELF_LINK}/addresses/{name}"})  # fmt: skip
        for body in [certificate, *certificates] if certificate else certificates:
            api.json(f"{API}/sslCertificates/{body['name']}", body)
        endpoint = httpserver.url_for("").rstrip("/")
        return lambda project: ops.Live(project, credentials=credentials or AnonymousCredentials(), api_endpoint=endpoint)

    yield serve
    methods = {request.method for request in api.requests()}
    assert methods <= {"GET"}, f"verify and endpoint only read, yet they sent {sorted(methods)}"


def run(command, factory):
    return ops.main([command], live_factory=factory)


@pytest.mark.parametrize("extra", [{}, {"DOMAIN": "api.example.com"}], ids=["http", "https"])
def test_verify_in_sync_exits_0(env, compute, capsys, extra):
    settings = env(ALLOWED_IP_RANGES="203.0.113.4, 2001:db8::/32", IPV6="true", **extra)
    factory = compute(policy=policy_json(plan_rules(settings)), backend=backend_json())

    assert run("verify", factory) == 0
    assert f"in sync: the live policy {POLICY_NAME}, the Cloud Run service, the forwarding rules, proxies and URL maps, and every backend service" in capsys.readouterr().out


def test_verify_reports_an_address_added_by_hand(env, compute, capsys):
    rules = plan_rules(env())
    rules.append(Rule(priority=1500, action="allow", description="someone's laptop", src_ip_ranges=("198.51.100.7/32",)))
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "198.51.100.7/32 is allowed by the live policy but not by the code" in out
    assert "differs from the code in 1 ways" in out


@pytest.mark.parametrize(
    "rule, words",
    [
        (Rule(priority=500, action="allow", description="open for a demo", src_ip_ranges=("*",)),
         "everyone (*) is allowed by the live policy but not by the code"),
        (Rule(priority=500, action="rate_based_ban", description="partner", src_ip_ranges=("198.51.100.0/24",)),
         "198.51.100.0/24 is allowed by the live policy but not by the code"),
    ],
    ids=["allow everyone", "rate-based ban lets requests through"],
)  # fmt: skip
def test_verify_reports_a_rule_that_lets_more_in_by_hand(env, compute, capsys, rule, words):
    rules = plan_rules(env()) + [rule]
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert words in out
    assert "differs from the code in 1 ways" in out


@pytest.mark.parametrize(
    "service, words",
    [
        (service_json(ingress="INGRESS_TRAFFIC_ALL"),
         "the Cloud Run service inference admits traffic from anywhere, so its run.app URL or a domain mapping lets "
         "callers past Cloud Armor (ingress INGRESS_TRAFFIC_ALL); the code admits only the load balancer "
         "(INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER)"),
        (service_json(default_uri_disabled=False),
         "the Cloud Run service inference's run.app URL is open (defaultUriDisabled is off): the project's VPC networks"),
        (service_json(invoker_iam_disabled=False),
         "the Cloud Run service inference checks the Cloud Run invoker role again (invokerIamDisabled is off)"),
    ],
    ids=["ingress all", "run.app URL open", "invoker check on"],
)  # fmt: skip
def test_verify_reports_each_way_around_the_load_balancer(env, compute, capsys, service, words):
    factory = compute(policy=policy_json(plan_rules(env())), service=service)

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert words in out
    assert "differs from the code in 1 ways" in out


def test_verify_reports_every_unguarded_backend_of_the_url_maps(env, compute, capsys):
    settings = env(DOMAIN="api.example.com")
    maps = [
        url_map_json(path_rules=[("/debug/*", f"{SELF_LINK}/backendServices/debug"),
                                 ("/static/*", f"{SELF_LINK}/backendBuckets/assets")]),
        url_map_json(REDIRECT_MAP_NAME, default="legacy"),
    ]  # fmt: skip
    backends = [backend_json(policy=None, name="debug"), backend_json(policy=f"{SELF_LINK}/securityPolicies/other", name="legacy")]
    factory = compute(policy=policy_json(plan_rules(settings)), url_maps=maps, backends=backends)

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert f"the backend service debug is not guarded by {POLICY_NAME}: its security policy is none (the URL map {URL_MAP_NAME} sends requests to it)" in out
    assert f"the URL map {URL_MAP_NAME} sends requests to the backend bucket assets, which {POLICY_NAME} cannot guard" in out
    assert f"the backend service legacy is not guarded by {POLICY_NAME}: its security policy is {SELF_LINK}/securityPolicies/other (the URL map {REDIRECT_MAP_NAME}" in out
    assert "elsewhere" not in out
    assert f"the URL map {REDIRECT_MAP_NAME} of port 80 does not redirect; the code answers 308 to HTTPS" in out
    assert f"the URL map {REDIRECT_MAP_NAME} of port 80 also routes requests (default_service)" in out
    assert "differs from the code in 5 ways" in out


def test_verify_reports_a_default_rule_in_preview(env, compute, capsys):
    rules = [r if r.priority != 2147483647 else Rule(**{**r.__dict__, "preview": True}) for r in plan_rules(env())]
    factory = compute(policy=policy_json(rules))

    assert run("verify", factory) == 1
    assert "the default rule is in preview mode, for which Cloud Armor documents no outcome" in capsys.readouterr().out


def test_verify_reports_a_range_removed_by_hand(env, compute, capsys):
    settings = env(ALLOWED_IP_RANGES="203.0.113.4 198.51.100.0/24")
    rules = [r if not r.src_ip_ranges or r.src_ip_ranges == ("*",) else Rule(**{**r.__dict__, "src_ip_ranges": ("203.0.113.4/32",)})
             for r in plan_rules(settings)]  # fmt: skip
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    assert "198.51.100.0/24 is allowed by the code but not by the live policy" in capsys.readouterr().out


def test_verify_reports_a_default_rule_that_allows(env, compute, capsys):
    rules = [r if r.priority != 2147483647 else Rule(**{**r.__dict__, "action": "allow"}) for r in plan_rules(env())]
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    assert "the default rule is allow on ['*']; expected deny(403) on ['*']" in capsys.readouterr().out


def test_verify_reports_adaptive_protection_off_and_a_detached_policy(env, compute, capsys):
    factory = compute(policy=policy_json(plan_rules(env()), adaptive=False), backend=backend_json(policy=None))

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "adaptive protection's layer-7 DDoS defense is off" in out
    assert f"the backend service {BACKEND_NAME} is not guarded by {POLICY_NAME}: its security policy is none" in out


def test_verify_reports_rules_missing_or_added(env, compute, capsys):
    rules = [r for r in plan_rules(env()) if r.priority != 100]
    rules.append(Rule(priority=500, action="deny(404)", description="manual block", src_ip_ranges=("192.0.2.0/24",)))
    factory = compute(policy=policy_json(rules), backend=backend_json())

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "rule 100 (WAF part 1 of 3: sqli, xss, lfi, rfi, rce) is in the code but not live" in out
    assert "rule 500 (deny(404): manual block) is live but not in the code" in out


@pytest.mark.parametrize(
    "status, words",
    [
        (404, "does not exist in project p: run `make deploy` first"),
        (403, "permission denied"),
        (500, "reading the security policy inference-policy failed"),
    ],
)  # fmt: skip
def test_verify_explains_a_missing_or_forbidden_policy_in_one_line(env, compute, capsys, status, words):
    env()
    factory = compute(policy_status=status)

    assert run("verify", factory) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_a_missing_cloud_run_service_is_a_failure_to_check_not_drift(env, compute, httpserver, capsys):
    factory = compute(policy=policy_json(plan_rules(env())))
    httpserver.clear_all_handlers()
    httpserver.expect_request(f"{API}/securityPolicies/{POLICY_NAME}").respond_with_json(policy_json(plan_rules(env())))
    httpserver.expect_request(RUN_API).respond_with_json(error_json(404), status=404)

    assert run("verify", factory) == 2
    assert capsys.readouterr().err == (
        f"error: the Cloud Run service {SERVICE_NAME} in asia-northeast1 does not exist in project p: run `make deploy` first\n"
    )


def test_refused_credentials_give_one_line_and_exit_2(env, compute, httpserver, capsys):
    """Expired or revoked user credentials: google-auth's real refresh against a token endpoint that says so."""
    httpserver.expect_request("/token", method="POST").respond_with_json(
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, status=400
    )
    revoked = Credentials(token=None, refresh_token="1//revoked", client_id="c", client_secret="s",
                          token_uri=httpserver.url_for("/token"))  # fmt: skip
    factory = compute(policy=policy_json(plan_rules(env())), credentials=revoked)

    assert run("verify", factory) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Google refused your credentials (invalid_grant: Token has been expired or revoked.)")
    assert err.rstrip().endswith("run `gcloud auth application-default login` again") and err.count("\n") == 1


def test_an_access_token_the_api_refuses_gives_one_line_and_exit_2(env, compute, httpserver, capsys):
    """The token endpoint grants tokens but the API answers 401 to each: google-auth refreshes, then gives up."""
    httpserver.expect_request("/token", method="POST").respond_with_json(
        {"access_token": "ya29.refused", "expires_in": 3600, "token_type": "Bearer"}
    )
    granted = Credentials(token=None, refresh_token="1//r", client_id="c", client_secret="s",
                          token_uri=httpserver.url_for("/token"))  # fmt: skip
    env()
    factory = compute(policy_status=401, credentials=granted)

    assert run("verify", factory) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Google refused your credentials (") and err.count("\n") == 1


def test_an_unreachable_api_gives_one_line_and_exit_2(env, capsys):
    env()
    closed = f"http://127.0.0.1:{free_port()}"
    factory = lambda project: ops.Live(project, credentials=AnonymousCredentials(), api_endpoint=closed)  # noqa: E731

    assert run("verify", factory) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reading the security policy inference-policy failed: Google's API could not be reached")
    assert err.count("\n") == 1


def test_endpoint_prints_the_url_and_ready_curls(env, compute, capsys):
    env()
    factory = compute(address=LB_IPV4)

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert f"endpoint: http://{LB_IPV4}/inference/" in out
    assert f"one row:  curl -X POST http://{LB_IPV4}/inference/ -H 'Content-Type: application/json' -d '{{\"sepal_length\": 5.1" in out
    assert f"batch:    curl -X POST http://{LB_IPV4}/inference/" in out and '"instances"' in out
    assert "IPv6" not in out and "AAAA" not in out


def test_endpoint_with_ipv6_prints_both_addresses(env, compute, capsys):
    env(IPV6="true")
    factory = compute(address=LB_IPV4, address_v6=LB_IPV6)

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert f"load balancer address: {LB_IPV4}\nload balancer IPv6 address: {LB_IPV6}\n" in out
    assert f"over IPv6: http://[{LB_IPV6}]/inference/" in out


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4 only", "ipv6 too"])
def test_endpoint_with_a_domain_shows_https_the_records_to_create_and_the_certificate(env, compute, capsys, ipv6):
    env(DOMAIN="api.example.com", **({"IPV6": "true"} if ipv6 else {}))
    name = certificate_name("api.example.com")
    certificate = {"kind": "compute#sslCertificate", "name": name, "type": "MANAGED",
                   "managed": {"status": "PROVISIONING", "domainStatus": {"api.example.com": "FAILED_NOT_VISIBLE"}}}  # fmt: skip
    factory = compute(address=LB_IPV4, address_v6=LB_IPV6 if ipv6 else None, certificate=certificate)

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert "endpoint: https://api.example.com/inference/" in out
    assert f"DNS records to create for api.example.com:\n  api.example.com.  A     {LB_IPV4}\n" in out
    assert (f"  api.example.com.  AAAA  {LB_IPV6}\n" in out) is ipv6
    assert f"certificate {name}: PROVISIONING (api.example.com: FAILED_NOT_VISIBLE)" in out
    assert "HTTPS answers once the certificate is ACTIVE: create the records above" in out


def test_missing_credentials_give_one_sentence(tmp_path):
    result = ops_process(tmp_path)

    assert result.returncode == 2
    assert result.stderr == "error: no Google credentials found: run `gcloud auth application-default login`\n"


def ops_process(tmp_path, **extra) -> subprocess.CompletedProcess:
    closed = f"127.0.0.1:{free_port()}"  # keeps google-auth's metadata-server probe on loopback
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path),
           "GCE_METADATA_HOST": closed, "GCE_METADATA_IP": closed, **BASE_ENV, **extra}  # fmt: skip
    return subprocess.run(
        [sys.executable, str(ROOT / "cdktf" / "ops.py"), "verify"], env=env, capture_output=True, text=True, timeout=60
    )  # fmt: skip


def test_a_corrupt_credentials_file_gives_one_line(tmp_path):
    key = tmp_path / "key.json"
    key.write_text("{not json")

    result = ops_process(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key))

    assert result.returncode == 2
    assert result.stderr.startswith(f"error: the credentials file GOOGLE_APPLICATION_CREDENTIALS={key} cannot be used (")
    assert result.stderr.count("\n") == 1



@pytest.mark.parametrize("new_status", ["PROVISIONING", "ACTIVE"])
def test_endpoint_during_a_domain_change_says_when_to_drop_the_old_certificate(env, compute, capsys, new_status):
    env(DOMAIN="api2.example.com", PREVIOUS_DOMAIN="api.example.com")
    new, old = certificate_name("api2.example.com"), certificate_name("api.example.com")
    certificates = [
        {"kind": "compute#sslCertificate", "name": new, "type": "MANAGED", "managed": {"status": new_status}},
        {"kind": "compute#sslCertificate", "name": old, "type": "MANAGED", "managed": {"status": "ACTIVE"}},
    ]
    factory = compute(address=LB_IPV4, certificates=certificates)

    assert run("endpoint", factory) == 0
    out = capsys.readouterr().out
    assert "endpoint: https://api2.example.com/inference/" in out
    assert f"certificate {new}: {new_status}" in out
    assert f"previous certificate {old} (api.example.com): ACTIVE" in out
    if new_status == "ACTIVE":
        assert "the new certificate is ACTIVE: unset PREVIOUS_DOMAIN and `make deploy` drops the old one" in out
    else:
        assert "api.example.com is still served meanwhile; keep PREVIOUS_DOMAIN until the new certificate is ACTIVE" in out


def test_the_fake_api_is_as_strict_as_the_real_one(env, compute, httpserver):
    """Only GET on the paths verify reads, 404 elsewhere, lists in pages: what the tests of verify
    rely on to fail when verify writes, guesses a path, or reads only a first page."""
    from google.api_core import exceptions
    from google.cloud import compute_v1

    settings = env(DOMAIN="api.example.com", IPV6="true", ALLOWED_IP_RANGES="203.0.113.4 2001:db8::/32")
    compute(policy=policy_json(plan_rules(settings)))
    options = {"api_endpoint": httpserver.url_for("").rstrip("/")}
    common = {"credentials": AnonymousCredentials(), "transport": "rest", "client_options": options}
    backends = compute_v1.BackendServicesClient(**common)
    rules = compute_v1.GlobalForwardingRulesClient(**common)

    with pytest.raises(exceptions.MethodNotAllowed):
        backends.delete(project="p", backend_service=BACKEND_NAME)
    with pytest.raises(exceptions.NotFound):
        backends.get(project="p", backend_service="no-such-backend")
    assert len(list(rules.list(project="p"))) == 4
    pages = [request.args.get("pageToken", "") for request, _ in httpserver.log if "forwardingRules" in request.path]
    assert pages == ["", "page-2"]
    httpserver.log.clear()  # the DELETE above was this test's own, not verify's


def test_verify_follows_every_page_of_the_lists(env, compute, capsys):
    """The unguarded backend, the masked NEG and the extra forwarding rule all sit past the first page."""
    settings = env()
    harmless = [backend_json(name=f"shop-{i}", neg=f"shop-neg-{i}") for i in range(5)]
    negs = [neg_json(f"shop-neg-{i}", "shop") for i in range(3)] + [
        neg_json(STABLE_NEG, SERVICE_NAME), neg_json("masked-neg", url_mask="example.com/<service>")]  # fmt: skip
    rules, proxies = edge_json(settings)
    rules = [forwarding_rule_json(f"other-{i}", f"198.51.100.{i + 1}", 80, HTTP_PROXY) for i in range(3)] + rules
    rules.append(forwarding_rule_json("debug-8080", LB_IPV4, 8080, HTTP_PROXY))
    factory = compute(policy=policy_json(plan_rules(settings)), negs=negs, forwarding_rules=rules, proxies=proxies,
                      other_backends=harmless + [backend_json(policy=None, name="side-door", neg="masked-neg")])  # fmt: skip

    assert run("verify", factory) == 1
    out = capsys.readouterr().out
    assert "the backend service side-door sends requests to the serverless NEG masked-neg" in out
    assert "the forwarding rule debug-8080 on the address inference-lb-ip" in out
    assert "differs from the code in 2 ways" in out
