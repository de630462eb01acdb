"""The deployed endpoint, read through the Compute Engine and Cloud Run Admin APIs (REST).

`Live` wraps the clients (google-cloud-compute, google-cloud-run); `endpoint_report` and `drift`
turn what they read into plain words.
"""

import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from secure_endpoint.armor import ALLOWING_ACTIONS, Rule
from secure_endpoint.plan import (
    ADDRESS_NAME,
    ADDRESS_V6_NAME,
    BACKEND_NAME,
    CANARY_HEADER,
    CANARY_HEADER_VALUE,
    DEFAULT_RULE_PRIORITY,
    DEFAULT_URI_DISABLED,
    DENY,
    INGRESS,
    INVOKER_IAM_DISABLED,
    POLICY_NAME,
    REDIRECT_MAP_NAME,
    SERVICE_NAME,
    URL_MAP_NAME,
    Routing,
    arm_service_names,
    certificate_name,
    plan_arms,
    plan_routing,
    plan_rules,
)
from secure_endpoint.settings import EndpointSettings

SEED_BODY = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
BATCH_BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'


class LiveError(Exception):
    """One sentence saying what to do; no traceback."""


LOGIN = "gcloud auth application-default login"


class Live:
    """Reads what is deployed; every failure to read becomes one LiveError sentence."""

    def __init__(self, project: str, *, credentials: Any = None, api_endpoint: str | None = None):
        from google.cloud import compute_v1, run_v2

        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        common = {"credentials": credentials, "transport": "rest", "client_options": options}
        self.project = project
        self._addresses = compute_v1.GlobalAddressesClient(**common)
        self._policies = compute_v1.SecurityPoliciesClient(**common)
        self._backends = compute_v1.BackendServicesClient(**common)
        self._url_maps = compute_v1.UrlMapsClient(**common)
        self._certificates = compute_v1.SslCertificatesClient(**common)
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

    def service(self, region: str, name: str = SERVICE_NAME):
        """The Cloud Run service through the Admin API v2 (`defaultUriDisabled` is a v2 field)."""
        path = f"projects/{self.project}/locations/{region}/services/{name}"
        what = f"Cloud Run service {name} in {region}"
        return self._call(what, "roles/run.viewer", self._services.get_service, name=path)

    def _get(self, kind: str, name: str, call, **names):
        return self._call(f"{kind} {name}", "roles/compute.viewer", call, project=self.project, **names)

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
            raise LiveError(
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
            )
        )
    return sorted(rules, key=lambda rule: rule.priority)


def drift(live: Live, settings: EndpointSettings) -> list[str]:
    """Every difference between what is live and what the code synthesizes, in plain words:
    the policy's rules, each arm's service (its exposure and model), the split and the canary's
    header route, then every backend the URL maps can reach."""
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
    return differences + _routing_drift(settings, serving_map, routing) + _url_map_drift(live, settings)


def _policy_drift(live: Live, settings: EndpointSettings) -> list[str]:
    expected = plan_rules(settings)
    policy = live.policy()
    actual = live_rules(policy)
    differences = _range_drift(expected, actual) + _rule_drift(expected, actual)

    defaults = [rule for rule in actual if rule.priority == DEFAULT_RULE_PRIORITY]
    if not defaults or defaults[0].action != DENY or defaults[0].src_ip_ranges != ("*",):
        found = f"{defaults[0].action} on {list(defaults[0].src_ip_ranges)}" if defaults else "missing"
        differences.append(f"the default rule is {found}; expected {DENY} on ['*']")
    if defaults and defaults[0].preview:
        differences.append(
            "the default rule is in preview mode, for which Cloud Armor documents no outcome; "
            "the code keeps it enforced"
        )

    if not policy.adaptive_protection_config.layer7_ddos_defense_config.enable:
        differences.append("adaptive protection's layer-7 DDoS defense is off; the code turns it on")
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


def _url_map_drift(live: Live, settings: EndpointSettings) -> list[str]:
    """Every backend a URL map can send a request to must carry the policy."""
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
            attached = live.backend(name).security_policy
            if not attached.endswith(f"/securityPolicies/{POLICY_NAME}") and attached != POLICY_NAME:
                differences.append(
                    f"the backend service {name} is not guarded by {POLICY_NAME}: "
                    f"its security policy is {attached or 'none'}"
                    + ("" if name == BACKEND_NAME else f" (the URL map {map_name} sends requests to it)")
                )
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


# `*` matches every address of both families.
EVERYONE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def _allowed_ranges(rules: Iterable[Rule]) -> set:
    return {
        network
        for rule in rules
        if rule.action in ALLOWING_ACTIONS and not rule.preview and rule.expression is None
        for text in rule.src_ip_ranges
        for network in (EVERYONE if text == "*" else (ipaddress.ip_network(text, strict=False),))
    }


def _range_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    want, have = _allowed_ranges(expected), _allowed_ranges(actual)
    return [
        *(f"{n} is allowed by the code but not by the live policy" for n in _named(want - have)),
        *(f"{n} is allowed by the live policy but not by the code" for n in _named(have - want)),
    ]


def _named(networks: set) -> list[str]:
    if set(EVERYONE) <= networks:
        return ["everyone (*)"] + _named(networks - set(EVERYONE))
    return [str(n) for n in sorted(networks, key=lambda n: (n.version, n))]


def _rule_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    """Rules other than the allowlist and the default: WAF, and anything added by hand."""

    def others(rules):
        return {
            rule.priority: rule
            for rule in rules
            if rule.priority != DEFAULT_RULE_PRIORITY
            and not (rule.action in ALLOWING_ACTIONS and rule.expression is None)
        }

    want, have = others(expected), others(actual)
    differences = []
    for priority in sorted(want.keys() | have.keys()):
        code, live_rule = want.get(priority), have.get(priority)
        if live_rule is None:
            differences.append(f"rule {priority} ({code.description}) is in the code but not live")
        elif code is None:
            differences.append(
                f"rule {priority} ({live_rule.action}: {live_rule.description or 'no description'}) "
                "is live but not in the code"
            )
        elif (code.action, code.expression, set(code.src_ip_ranges), code.preview) != (
            live_rule.action, live_rule.expression, set(live_rule.src_ip_ranges), live_rule.preview,
        ):  # fmt: skip
            differences.append(f"rule {priority} ({code.description}) differs from the code")
    return differences
