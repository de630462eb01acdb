"""The deployed endpoint, read through the Compute Engine and Cloud Run Admin APIs (REST).

`Live` wraps the clients (google-cloud-compute, google-cloud-run); `endpoint_report` and `drift`
turn what they read into plain words.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from secure_endpoint.armor import RateLimit, Rule
from secure_endpoint.plan import (
    ADDRESS_NAME,
    ADDRESS_V6_NAME,
    BACKEND_NAME,
    CANARY,
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    DEFAULT_URI_DISABLED,
    INGRESS,
    INVOKER_IAM_DISABLED,
    JSON_PARSING,
    MIN_TLS_VERSION,
    POLICY_NAME,
    REDIRECT_MAP_NAME,
    SERVICE_NAME,
    SSL_POLICY_NAME,
    SSL_PROFILE,
    STABLE,
    URL_MAP_NAME,
    Arm,
    Routing,
    arm_service_names,
    certificate_name,
    plan_arms,
    plan_routing,
    plan_rules,
)
from secure_endpoint import url_mask
from secure_endpoint.live_monitoring import monitoring_drift
from secure_endpoint.rule_drift import rule_drift
from secure_endpoint.settings import EndpointSettings

SEED_BODY = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
BATCH_BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'


class LiveError(Exception):
    """One sentence saying what to do; no traceback."""


class Missing(LiveError):
    """The resource does not exist: an error for the command, drift where the code expects it."""


LOGIN = "gcloud auth application-default login"


class Live:
    """Reads what is deployed; every failure to read becomes one LiveError sentence."""

    def __init__(self, project: str, *, credentials: Any = None, api_endpoint: str | None = None):
        from google.cloud import compute_v1, run_v2

        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        common = {"credentials": credentials, "transport": "rest", "client_options": options}
        self.project = project
        self._credentials = credentials
        self._api_endpoint = api_endpoint
        self._addresses = compute_v1.GlobalAddressesClient(**common)
        self._policies = compute_v1.SecurityPoliciesClient(**common)
        self._backends = compute_v1.BackendServicesClient(**common)
        self._url_maps = compute_v1.UrlMapsClient(**common)
        self._certificates = compute_v1.SslCertificatesClient(**common)
        self._forwarding_rules = compute_v1.GlobalForwardingRulesClient(**common)
        self._http_proxies = compute_v1.TargetHttpProxiesClient(**common)
        self._https_proxies = compute_v1.TargetHttpsProxiesClient(**common)
        self._ssl_policies = compute_v1.SslPoliciesClient(**common)
        self._negs = compute_v1.NetworkEndpointGroupsClient(**common)
        self._services = run_v2.ServicesClient(**common)

    @classmethod
    def with_default_credentials(cls, project: str) -> "Live":
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError as error:
            path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if path:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                raise LiveError(
                    f"the credentials file GOOGLE_APPLICATION_CREDENTIALS={path} cannot be used ({reason}): "
                    f"point it at a valid key file, or unset it and run `{LOGIN}`"
                ) from None
            raise LiveError(f"no Google credentials found: run `{LOGIN}`") from None
        return cls(project, credentials=credentials)

    def address(self, name: str = ADDRESS_NAME) -> str:
        return self._get("global address", name, self._addresses.get, address=name).address

    def policy(self):
        return self._get("security policy", POLICY_NAME, self._policies.get, security_policy=POLICY_NAME)

    def backend(self, name: str = BACKEND_NAME):
        return self._get("backend service", name, self._backends.get, backend_service=name)

    def url_map(self, name: str):
        return self._get("URL map", name, self._url_maps.get, url_map=name)

    def certificate(self, domain: str):
        name = certificate_name(domain)
        return self._get("certificate", name, self._certificates.get, ssl_certificate=name)

    def forwarding_rules(self) -> list:
        return self._list("global forwarding rules", self._forwarding_rules.list)

    def proxy(self, link: str):
        """The target HTTP or HTTPS proxy a forwarding rule names; None for any other kind of target."""
        kind, name = _kind_and_name(link)
        if kind == "targetHttpProxies":
            return self._get("target HTTP proxy", name, self._http_proxies.get, target_http_proxy=name)
        if kind == "targetHttpsProxies":
            return self._get("target HTTPS proxy", name, self._https_proxies.get, target_https_proxy=name)
        return None

    def ssl_policy(self, name: str):
        return self._get("SSL policy", name, self._ssl_policies.get, ssl_policy=name)

    def all_backend_services(self) -> list:
        """Every backend service of the project, global and regional."""
        scoped = self._list("backend services", self._backends.aggregated_list)
        return [backend for _, found in scoped for backend in found.backend_services]

    def all_network_endpoint_groups(self) -> list:
        """Every network endpoint group of the project, in every region and zone."""
        scoped = self._list("network endpoint groups", self._negs.aggregated_list)
        return [group for _, found in scoped for group in found.network_endpoint_groups]

    def service(self, region: str, name: str = SERVICE_NAME):
        """The Cloud Run service through the Admin API v2 (`defaultUriDisabled` is a v2 field)."""
        path = f"projects/{self.project}/locations/{region}/services/{name}"
        what = f"Cloud Run service {name} in {region}"
        return self._call(what, "roles/run.viewer", self._services.get_service, name=path)

    def monitoring_list(self, field: str) -> list[dict]:
        """Every item of a Cloud Monitoring v3 list (`uptimeCheckConfigs`, `alertPolicies`),
        through its REST API: the client library speaks only gRPC for these."""
        from google.auth.transport.requests import AuthorizedSession

        from secure_endpoint.live_monitoring import MONITORING_API, MONITORING_ROLE

        session = AuthorizedSession(self._credentials) if self._credentials is not None else None
        url = f"{self._api_endpoint or MONITORING_API}/v3/projects/{self.project}/{field}"
        what = f"Cloud Monitoring {field}"

        def read() -> list[dict]:
            items: list[dict] = []
            token = None
            while True:
                response = session.get(url, params={"pageToken": token} if token else None, timeout=30)
                if response.status_code in (401, 403):
                    raise _MonitoringRefused(response.status_code)
                if response.status_code != 200:
                    raise LiveError(f"reading the {what} failed: HTTP {response.status_code} {response.text[:200]}")
                body = response.json()
                items += body.get(field, [])
                token = body.get("nextPageToken")
                if not token:
                    return items

        try:
            return self._call(what, MONITORING_ROLE, read)
        except _MonitoringRefused:
            raise LiveError(
                f"permission denied reading the {what} in project {self.project}: "
                f"your account needs {MONITORING_ROLE} there"
            ) from None

    def _get(self, kind: str, name: str, call, **names):
        return self._call(f"{kind} {name}", "roles/compute.viewer", call, project=self.project, **names)

    def _list(self, kind: str, call) -> list:
        # Later pages are fetched while iterating: inside _call, so their failures read the same.
        return self._call(kind, "roles/compute.viewer", lambda **names: list(call(**names)), project=self.project)

    def _call(self, what: str, role: str, call, **arguments):
        import requests
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        try:
            return call(**arguments)
        except auth_exceptions.RefreshError as error:
            raise LiveError(_refused(error.args[0] if error.args else error)) from None
        except exceptions.Unauthorized as error:
            raise LiveError(_refused(error.message or error)) from None
        except exceptions.NotFound:
            raise Missing(
                f"the {what} does not exist in project {self.project}: run `make deploy` first"
            ) from None
        except exceptions.Forbidden:
            raise LiveError(
                f"permission denied reading the {what} in project {self.project}: "
                f"your account needs {role} there"
            ) from None
        except exceptions.GoogleAPICallError as error:
            raise LiveError(f"reading the {what} failed: {error.message or error}") from None
        except (auth_exceptions.TransportError, requests.RequestException) as error:
            raise LiveError(
                f"reading the {what} failed: Google's API could not be reached ({error})"
            ) from None


class _MonitoringRefused(Exception):
    """Cloud Monitoring answered 401 or 403."""


def _refused(reason) -> str:
    return (
        f"Google refused your credentials ({reason}); they may have expired or been revoked: "
        f"run `{LOGIN}` again"
    )


@dataclass(frozen=True)
class EndpointReport:
    url: str
    lines: list[str]


def endpoint_report(live: Live, settings: EndpointSettings) -> EndpointReport:
    address = live.address()
    address_v6 = live.address(ADDRESS_V6_NAME) if settings.ipv6 else None
    base = f"https://{settings.domain}" if settings.domain else f"http://{address}"
    url = f"{base}/inference/"
    lines = [f"load balancer address: {address}"]
    if address_v6:
        lines.append(f"load balancer IPv6 address: {address_v6}")
    lines += [
        f"endpoint: {url}",
        f"one row:  curl -X POST {url} -H 'Content-Type: application/json' -d '{SEED_BODY}'",
        f"batch:    curl -X POST {url} -H 'Content-Type: application/json' -d '{BATCH_BODY}'",
    ]
    if address_v6 and not settings.domain:
        lines.append(f"over IPv6: http://[{address_v6}]/inference/")
    lines += _traffic(live, settings, url)
    if settings.domain:
        records = [("A", address)] + ([("AAAA", address_v6)] if address_v6 else [])
        lines.append(f"DNS records to create for {settings.domain}:")
        lines += [f"  {settings.domain}.  {kind:<4}  {value}" for kind, value in records]
        certificate = live.certificate(settings.domain)
        status = certificate.managed.status
        domains = ", ".join(f"{d}: {s}" for d, s in certificate.managed.domain_status.items())
        lines.append(f"certificate {certificate.name}: {status}" + (f" ({domains})" if domains else ""))
        if status != "ACTIVE":
            lines.append(
                "HTTPS answers once the certificate is ACTIVE: create the records above; "
                "provisioning then takes up to an hour"
            )
        if settings.previous_domain:
            lines += _domain_change(live, settings.previous_domain, new_active=status == "ACTIVE")
    return EndpointReport(url=url, lines=lines)


def _traffic(live: Live, settings: EndpointSettings, url: str) -> list[str]:
    """The live split, and the model each arm's service loads (its MODEL_URI)."""
    routing = live_routing(live.url_map(URL_MAP_NAME))
    backends = [*routing.weights, *([routing.header_route] if routing.header_route else [])]
    arms = {backend: _arm(live, settings, backend) for backend in dict.fromkeys(backends)}
    width = max((len(label) for label, _ in arms.values()), default=0)
    total = sum(routing.weights.values()) or 1
    lines = [f"traffic, as the URL map {URL_MAP_NAME} sends it:"]
    for backend, weight in routing.weights.items():
        label, model = arms[backend]
        lines.append(f"  {weight * 100 / total:>5.4g}%  {label:<{width}}  {model}".rstrip())
    if routing.header_route:
        label, model = arms[routing.header_route]
        lines += [
            f"  {CANARY_HEADER}: {CANARY_HEADER_VALUE} always reaches {label}",
            f"canary only: curl -X POST {url} -H '{CANARY_HEADER}: {CANARY_HEADER_VALUE}' "
            f"-H 'Content-Type: application/json' -d '{SEED_BODY}'",
        ]
    lines.append("each answer names its model in the X-Model-Version header")
    return lines


def _arm(live: Live, settings: EndpointSettings, backend: str) -> tuple[str, str]:
    """(Cloud Run service, its MODEL_URI) behind a backend service of this code."""
    service_name = arm_service_names().get(backend)
    if service_name is None:
        return f"{backend} (a backend service this code does not make)", ""
    model = model_uri_of(live.service(settings.region, service_name))
    return service_name, model or "no MODEL_URI set"


def model_uri_of(service) -> str | None:
    for container in service.template.containers:
        for variable in container.env:
            if variable.name == "MODEL_URI":
                return variable.value
    return None


def live_routing(url_map) -> Routing:
    """What requests meet: the path matcher that the host rule for every host (*) names, or the
    URL map's own default when there is none."""
    data = type(url_map).to_dict(url_map)
    names = [rule.get("path_matcher") for rule in data.get("host_rules") or [] if "*" in (rule.get("hosts") or [])]
    matchers = [m for m in data.get("path_matchers") or [] if names and m.get("name") == names[0]]
    if not matchers:
        return Routing(weights=_default_weights(data))
    matcher = matchers[0]
    rules = sorted(matcher.get("route_rules") or [], key=lambda rule: rule.get("priority", 0))
    header_routes = [rule for rule in rules if _routes_canary_header(rule)]
    return Routing(
        weights=_default_weights(matcher),
        header_route=_name_of(header_routes[0].get("service", "")) if header_routes else None,
    )


def _default_weights(node: dict) -> dict[str, int]:
    weighted = (node.get("default_route_action") or {}).get("weighted_backend_services") or []
    weights: dict[str, int] = {}
    for entry in weighted:
        name = _name_of(entry.get("backend_service", ""))
        weights[name] = weights.get(name, 0) + int(entry.get("weight") or 0)
    if not weights and node.get("default_service"):
        weights[_name_of(node["default_service"])] = 100
    return weights


def _routes_canary_header(rule: dict) -> bool:
    return any(
        match.get("header_name", "").lower() == CANARY_HEADER.lower()
        and match.get("exact_match") == CANARY_HEADER_VALUE
        and not match.get("invert_match")
        for rules in rule.get("match_rules") or []
        for match in rules.get("header_matches") or []
    )


def _name_of(link: str) -> str:
    return link.rstrip("/").rpartition("/")[2]


def _domain_change(live: Live, previous_domain: str, *, new_active: bool) -> list[str]:
    old = live.certificate(previous_domain)
    lines = [f"previous certificate {old.name} ({previous_domain}): {old.managed.status}"]
    if new_active:
        lines.append(
            "the new certificate is ACTIVE: unset PREVIOUS_DOMAIN and `make deploy` drops the old one"
        )
    else:
        lines.append(
            f"{previous_domain} is still served meanwhile; "
            "keep PREVIOUS_DOMAIN until the new certificate is ACTIVE"
        )
    return lines


def live_rules(policy) -> list[Rule]:
    rules = []
    for raw in policy.rules:
        expression = raw.match.expr.expression if raw.match.expr.expression else None
        rules.append(
            Rule(
                priority=raw.priority,
                action=raw.action,
                description=raw.description,
                src_ip_ranges=tuple(raw.match.config.src_ip_ranges),
                expression=expression,
                preview=bool(raw.preview),
                rate_limit=_rate_limit(raw),
            )
        )
    return sorted(rules, key=lambda rule: rule.priority)


def _rate_limit(raw) -> RateLimit | None:
    if "rate_limit_options" not in raw:
        return None
    options = raw.rate_limit_options
    keys = [config.enforce_on_key_type + (f" {config.enforce_on_key_name}" if config.enforce_on_key_name else "")
            for config in options.enforce_on_key_configs]  # fmt: skip
    return RateLimit(
        count=options.rate_limit_threshold.count,
        interval_sec=options.rate_limit_threshold.interval_sec,
        conform_action=options.conform_action,
        exceed_action=options.exceed_action,
        # Several keys (enforceOnKeyConfigs) instead of one: never what the code sets.
        enforce_on_key=options.enforce_on_key or " + ".join(keys),
        enforce_on_key_name=options.enforce_on_key_name,
    )


def drift(live: Live, settings: EndpointSettings) -> list[str]:
    """Every difference between what is live and what the code synthesizes, in plain words:
    the policy's rules field by field and in order (rule_drift), each arm's service (its exposure
    and model), the split and the canary's header route, every backend the URL maps can reach
    (the very policy the code declares, by its self link; Cloud CDN off), the forwarding rules on
    the endpoint's addresses with their proxies (URL map, SSL policy), then any other backend
    service, global or regional, that reaches the endpoint's Cloud Run services through a
    serverless NEG, whether it names the service or its URL mask can."""
    differences = _policy_drift(live, settings)
    models = {arm.service_name: arm.model_uri for arm in plan_arms(settings)}
    for name, model in models.items():
        differences += _service_drift(live, settings, name, model)
    serving_map = live.url_map(URL_MAP_NAME)
    routing = live_routing(serving_map)
    # An arm the code no longer has (a canary removed but not yet deployed) still takes traffic.
    services = arm_service_names()
    for backend in [*routing.weights, routing.header_route]:
        name = services.get(backend or "")
        if name is not None and name not in models:
            models[name] = None
            differences += _service_drift(live, settings, name, None)
    differences += _routing_drift(settings, serving_map, routing)
    map_differences, guarded = _url_map_drift(live, settings)
    differences += map_differences + _edge_drift(live, settings)
    differences += _second_backend_drift(live, settings, skip=guarded)
    if settings.alert_email:
        differences += monitoring_drift(live.monitoring_list, settings)
    return differences


def _policy_drift(live: Live, settings: EndpointSettings) -> list[str]:
    policy = live.policy()
    differences = rule_drift(plan_rules(settings), live_rules(policy))
    if not policy.adaptive_protection_config.layer7_ddos_defense_config.enable:
        differences.append("adaptive protection's layer-7 DDoS defense is off; the code turns it on")
    parsing = policy.advanced_options_config.json_parsing or "DISABLED"
    if parsing != JSON_PARSING:
        effect = ": the WAF rules read JSON bodies as plain text, more false positives" if parsing == "DISABLED" else ""
        differences.append(f"the policy's JSON parsing is {parsing}{effect}; the code sets {JSON_PARSING}")
    return differences


_INGRESS_WORDS = {
    "INGRESS_TRAFFIC_ALL": (
        "traffic from anywhere, so its run.app URL or a domain mapping lets callers past Cloud Armor"
    ),
    "INGRESS_TRAFFIC_INTERNAL_ONLY": "internal traffic only, which shuts out the external load balancer",
}


def _service_drift(live: Live, settings: EndpointSettings, name: str, model_uri: str | None) -> list[str]:
    """One arm's service: its exposure, and its model when the code has that arm."""
    service = live.service(settings.region, name)
    differences = _exposure_drift(service, f"the Cloud Run service {name}")
    live_model = model_uri_of(service)
    if model_uri is not None and live_model != model_uri:
        differences.append(
            f"the Cloud Run service {name} loads {live_model or 'no MODEL_URI'}; the code gives it {model_uri}"
        )
    return differences


def _exposure_drift(service, label: str) -> list[str]:
    differences = []
    ingress = service.ingress.name
    if ingress != INGRESS:
        admits = _INGRESS_WORDS.get(ingress, ingress)
        differences.append(
            f"{label} admits {admits} (ingress {ingress}); "
            f"the code admits only the load balancer ({INGRESS})"
        )
    if bool(service.default_uri_disabled) != DEFAULT_URI_DISABLED:
        differences.append(
            f"{label}'s run.app URL is open (defaultUriDisabled is off): the project's VPC networks, "
            "its other load balancers and Google services such as Pub/Sub pushes reach it without "
            "passing Cloud Armor; the code closes it"
        )
    if bool(service.invoker_iam_disabled) != INVOKER_IAM_DISABLED:
        differences.append(
            f"{label} checks the Cloud Run invoker role again (invokerIamDisabled is off): the load "
            "balancer's anonymous clients get Cloud Run's 403, and whoever holds the role decides "
            "access instead of the code; the code turns the check off"
        )
    return differences


def _routing_drift(settings: EndpointSettings, serving_map, routing: Routing) -> list[str]:
    """The split and the canary's header route of the URL map that serves, against the code's."""
    expected = plan_routing(settings)
    label = f"the URL map {URL_MAP_NAME}"
    differences = []
    if routing.weights != expected.weights:
        differences.append(
            f"{label} splits requests {routing.shares() or 'nowhere'}; the code splits them {expected.shares()}"
        )
    data = type(serving_map).to_dict(serving_map)
    fallback = _default_weights(data)
    # Only a host rule makes the map's own default a second path; the same wrong split is said once.
    if data.get("host_rules") and fallback not in (expected.weights, routing.weights):
        differences.append(
            f"{label}'s default for hosts no host rule matches sends requests "
            f"{Routing(fallback).shares() or 'nowhere'}; the code sends them {expected.shares()}"
        )
    if routing.header_route != expected.header_route:
        header = f"{CANARY_HEADER}: {CANARY_HEADER_VALUE}"
        live_words = f"sends {header} to {routing.header_route}" if routing.header_route else f"has no route for {header}"
        code_words = f"to {expected.header_route}" if expected.header_route else "nowhere special (it takes the split)"
        differences.append(f"{label} {live_words}; the code sends it {code_words}")
    return differences


def _url_map_drift(live: Live, settings: EndpointSettings) -> tuple[list[str], set[str]]:
    """Every backend a URL map can send a request to must carry the policy. Also returns the
    names of the backend services it looked at, so that none is reported twice."""
    differences = []
    names = [URL_MAP_NAME] + ([REDIRECT_MAP_NAME] if settings.domain else [])
    checked: set[str] = set()
    for map_name in names:
        url_map = live.url_map(map_name)
        for link in _backend_links(type(url_map).to_dict(url_map)):
            kind, _, name = link.rstrip("/").rpartition("/")
            if link in checked:
                continue
            checked.add(link)
            if kind.endswith("backendBuckets"):
                differences.append(
                    f"the URL map {map_name} sends requests to the backend bucket {name}, "
                    f"which {POLICY_NAME} cannot guard"
                )
                continue
            project, scope, _, _ = _identity(link)
            if (project, scope) != (settings.project_id, "global"):
                # Reading it by name would read this project's backend of that name instead.
                differences.append(
                    f"the URL map {map_name} sends requests to {link}, which is not a backend service of "
                    f"project {settings.project_id}; the code sends them only to its own backend services"
                )
                continue
            backend = live.backend(name)
            attached = backend.security_policy
            if not _is_the_policy(attached, settings):
                differences.append(
                    f"the backend service {name} is not guarded by {POLICY_NAME}: "
                    f"its security policy is {_policy_words(attached, settings)}"
                    + ("" if name == BACKEND_NAME else f" (the URL map {map_name} sends requests to it)")
                )
            if backend.enable_c_d_n:
                differences.append(_cdn_words(f"the backend service {name}"))
    ours = {link for link in checked if _identity(link)[:2] == (settings.project_id, "global")}
    return differences, {_kind_and_name(link)[1] for link in ours}


def _identity(link: str) -> tuple[str, str, str, str]:
    """(project, scope, collection, name) of a Compute resource's URL or relative path:
    `.../projects/p/global/securityPolicies/x` -> ("p", "global", "securityPolicies", "x");
    a regional one has `regions/r` as its scope. Empty parts when the link says no more."""
    parts = link.rstrip("/").split("/")
    try:
        at = len(parts) - 1 - parts[::-1].index("projects")
    except ValueError:
        return "", "", "", parts[-1] if parts else ""
    rest = parts[at + 1 :]
    if len(rest) == 4 and rest[1] == "global":
        return rest[0], "global", rest[2], rest[3]
    if len(rest) == 5 and rest[1] in ("regions", "zones"):
        return rest[0], f"{rest[1]}/{rest[2]}", rest[3], rest[4]
    return "", "", "", parts[-1]


def declared_policy(settings: EndpointSettings) -> tuple[str, str, str, str]:
    """The policy the code declares: global, in the deployment's project, by its name."""
    return settings.project_id, "global", "securityPolicies", POLICY_NAME


def _is_the_policy(link: str, settings: EndpointSettings) -> bool:
    """The very policy the code declares, by its self link; another policy that carries the same
    name (a regional one, another project's) guards by other rules."""
    return bool(link) and _identity(link) == declared_policy(settings)


def _policy_words(link: str, settings: EndpointSettings) -> str:
    if not link:
        return "none"
    project, scope, _, name = _identity(link)
    if name == POLICY_NAME and scope.startswith("regions/"):
        return f"{link}, a regional policy that only shares the name of the code's global one"
    if name == POLICY_NAME and project != settings.project_id:
        return f"{link}, project {project}'s policy of the same name"
    return link


def _kind_and_name(link: str) -> tuple[str, str]:
    """`.../global/targetHttpProxies/x` -> ("targetHttpProxies", "x")."""
    parts = link.rstrip("/").split("/")
    return (parts[-2] if len(parts) > 1 else ""), parts[-1]


# What the code sets on the HTTPS proxy with DOMAIN (edge.py's ComputeSslPolicy).
HTTP_PORT, HTTPS_PORT = 80, 443
_PROXY_WORDS = {"targetHttpProxies": "HTTP proxy", "targetHttpsProxies": "HTTPS proxy"}


def _expected_maps(settings: EndpointSettings) -> dict[int, tuple[str, str]]:
    """Port -> (the proxy kind, the URL map) the code puts behind it on each of its addresses."""
    if settings.domain:
        return {HTTP_PORT: ("targetHttpProxies", REDIRECT_MAP_NAME), HTTPS_PORT: ("targetHttpsProxies", URL_MAP_NAME)}
    return {HTTP_PORT: ("targetHttpProxies", URL_MAP_NAME)}


def _edge_drift(live: Live, settings: EndpointSettings) -> list[str]:
    """The forwarding rules on the endpoint's addresses, the proxies they send to, the URL map
    behind each proxy, the HTTPS proxy's SSL policy, and the redirect-only map of port 80."""
    expected = _expected_maps(settings)
    addresses = [(ADDRESS_NAME, live.address())]
    differences = []
    if settings.ipv6:
        try:
            addresses.append((ADDRESS_V6_NAME, live.address(ADDRESS_V6_NAME)))
        except Missing:
            differences.append(
                f"the IPv6 address {ADDRESS_V6_NAME} does not exist, so the endpoint has no IPv6 way in; "
                "the code makes it (IPV6=true)"
            )
    rules = live.forwarding_rules()
    proxies: dict[str, Any] = {}
    # A proxy on a port the code does not open is reported with its rule, not again for its TLS.
    serving_https: dict[str, Any] = {}

    def proxy(link: str):
        if link not in proxies:
            proxies[link] = live.proxy(link)
        return proxies[link]

    for address_name, ip in addresses:
        label = f"the address {address_name} ({ip})"
        on_address = [rule for rule in rules if _points_at(rule, address_name, ip)]
        open_ports = set()
        for rule in on_address:
            ports = _ports(rule.port_range)
            open_ports |= set(ports)
            kind, target_name = _kind_and_name(rule.target)
            target = proxy(rule.target)
            map_name = _kind_and_name(target.url_map)[1] if target is not None else None
            sends_to = f"the {_PROXY_WORDS.get(kind, kind)} {target_name}" + (
                f" and its URL map {map_name}" if map_name else ""
            )
            wanted = expected.get(ports[0]) if len(ports) == 1 else None
            if wanted is None:
                opened = " and ".join(map(str, sorted(expected)))
                differences.append(
                    f"the forwarding rule {rule.name} on {label} opens {_port_words(rule.port_range)} and sends "
                    f"to {sends_to}, which the code does not make (it opens only {opened} there)"
                )
            elif (kind, map_name) != wanted:
                want_kind, want_map = wanted
                differences.append(
                    f"the forwarding rule {rule.name} on port {ports[0]} of {label} sends to {sends_to}; "
                    f"the code sends port {ports[0]} to an {_PROXY_WORDS[want_kind]} and the URL map {want_map}"
                )
            if wanted is not None and kind == wanted[0] == "targetHttpsProxies" and target is not None:
                serving_https[rule.target] = target
        for port in sorted(set(expected) - open_ports):
            differences.append(
                f"no forwarding rule opens port {port} on {label}; the code serves "
                + ("HTTPS" if port == HTTPS_PORT else "HTTP")
                + " there"
            )
    for target in serving_https.values():
        differences += _ssl_drift(live, target)
    if settings.domain:
        differences += _redirect_drift(live.url_map(REDIRECT_MAP_NAME))
    return differences


def _points_at(rule, address_name: str, ip: str) -> bool:
    """The API gives a rule's address as the IP; a reference to the address resource is accepted too."""
    value = rule.I_p_address
    return value == ip or value.endswith(f"/addresses/{address_name}")


def _ports(port_range: str) -> list[int]:
    """`80-80` -> [80]; `8000-8010` -> its eleven ports; empty (every port) -> [0]."""
    if not port_range:
        return [0]
    low, _, high = port_range.partition("-")
    return list(range(int(low), int(high or low) + 1))


def _port_words(port_range: str) -> str:
    if not port_range:
        return "every port"
    low, _, high = port_range.partition("-")
    return f"port {low}" if high in ("", low) else f"ports {low}-{high}"


def _ssl_drift(live: Live, proxy) -> list[str]:
    code = f"the code gives it {SSL_POLICY_NAME} ({SSL_PROFILE} profile, {MIN_TLS_VERSION} or later)"
    if not proxy.ssl_policy:
        return [
            f"the HTTPS proxy {proxy.name} has no SSL policy, so Google's default applies "
            f"(COMPATIBLE profile, TLS 1.0 or later); {code}"
        ]
    name = _kind_and_name(proxy.ssl_policy)[1]
    differences = []
    if name != SSL_POLICY_NAME:
        differences.append(f"the HTTPS proxy {proxy.name} carries the SSL policy {name}; {code}")
    policy = live.ssl_policy(name)
    if (policy.profile, policy.min_tls_version) != (SSL_PROFILE, MIN_TLS_VERSION):
        differences.append(
            f"the SSL policy {name} of the HTTPS proxy {proxy.name} has the {policy.profile or 'default'} profile "
            f"and {policy.min_tls_version or 'TLS_1_0'} or later; the code sets {SSL_PROFILE} and {MIN_TLS_VERSION}"
        )
    return differences


def _redirect_drift(url_map) -> list[str]:
    """With DOMAIN, port 80's URL map only answers 308 to the same URL over HTTPS."""
    data = type(url_map).to_dict(url_map)
    label = f"the URL map {REDIRECT_MAP_NAME} of port 80"
    differences = []
    redirect = data.get("default_url_redirect") or {}
    code = redirect.get("redirect_response_code") or "MOVED_PERMANENTLY_DEFAULT"
    if not redirect:
        differences.append(f"{label} does not redirect; the code answers 308 to HTTPS")
    elif not redirect.get("https_redirect") or code != "PERMANENT_REDIRECT":
        differences.append(
            f"{label} answers {code}" + (" to HTTPS" if redirect.get("https_redirect") else " without switching to HTTPS")
            + "; the code answers 308 (PERMANENT_REDIRECT) to HTTPS, which keeps a POST a POST"
        )  # fmt: skip
    routes = [key for key in ("default_service", "default_route_action", "host_rules", "path_matchers") if data.get(key)]
    if routes:
        differences.append(
            f"{label} also routes requests ({', '.join(routes)}), so port 80 serves in clear text "
            "instead of only redirecting; the code only redirects"
        )
    return differences


def _cdn_words(label: str) -> str:
    return (
        f"{label} has Cloud CDN on: cached answers are served before Cloud Armor's backend policy "
        "is evaluated, so anyone gets what an allowed client fetched (GET /, /openapi.json, the docs); "
        "the code leaves Cloud CDN off"
    )


def _neg_reach(group, services: set[str], region: str) -> str | None:
    """The Cloud Run service of the endpoint that a serverless NEG sends requests to, in words;
    None when it reaches none of them. A Cloud Run NEG reaches services of its own region only."""
    if group.network_endpoint_type != "SERVERLESS" or _kind_and_name(group.region)[1] != region:
        return None
    run = group.cloud_run
    if run.service in services:
        return run.service
    masked = sorted(name for name in services if url_mask.reaches(run.url_mask, name))
    if masked and not run.service:
        return f"{' and '.join(masked)} through its URL mask {run.url_mask}"
    return None


def _second_backend_drift(live: Live, settings: EndpointSettings, *, skip: set[str]) -> list[str]:
    """A backend service of any load balancer, global or regional, that reaches the endpoint's
    Cloud Run services through a serverless NEG (the endpoint's own, one made by hand for the
    service, or one whose URL mask can name it) without the very policy the code declares, or
    with Cloud CDN on: a way in that passes no Cloud Armor rule."""
    arms = [Arm(role, "", 0) for role in (STABLE, CANARY)]
    services = {arm.service_name for arm in arms}
    ours = {(settings.region, arm.neg_name(settings.region)): arm.service_name for arm in arms}
    negs = dict(ours)
    for group in live.all_network_endpoint_groups():
        key = (_kind_and_name(group.region)[1], group.name)
        reach = _neg_reach(group, services, settings.region)
        if reach is not None:
            negs[key] = reach
    differences = []
    for backend in live.all_backend_services():
        scope = _kind_and_name(backend.region)[1] if backend.region else ""
        if not scope and backend.name in skip:
            continue
        where = f"regional backend service {backend.name} in {scope}" if scope else f"backend service {backend.name}"
        for entry in backend.backends:
            kind, name = _kind_and_name(entry.group)
            region = entry.group.split("/regions/")[1].split("/")[0] if "/regions/" in entry.group else ""
            if kind != "networkEndpointGroups" or (region, name) not in negs:
                continue
            if not _is_the_policy(backend.security_policy, settings):
                attached = _policy_words(backend.security_policy, settings)
                differences.append(
                    f"the {where} sends requests to the serverless NEG {name} ({negs[(region, name)]} in {region}) "
                    f"without {POLICY_NAME} (its security policy is {attached}): "
                    "another load balancer reaches the service past Cloud Armor; the code puts every backend of it "
                    "behind the policy"
                )
            elif backend.enable_c_d_n:
                differences.append(_cdn_words(f"the {where}, which reaches the service,"))
            break
    return differences


def _backend_links(node) -> Iterator[str]:
    """Every backend a URL map names: default and per-path services, weighted and mirrored ones.
    Its `tests` name backends too, but only as expectations, so they are skipped."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("default_service", "service", "backend_service") and isinstance(value, str) and value:
                yield value
            elif key != "tests":
                yield from _backend_links(value)
    elif isinstance(node, list):
        for item in node:
            yield from _backend_links(item)
