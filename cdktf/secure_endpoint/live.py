"""The deployed endpoint, read through the Compute Engine API (google-cloud-compute, REST).

`Live` wraps the clients; `endpoint_report` and `drift` turn what they read into plain words.
"""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from secure_endpoint.armor import ALLOWING_ACTIONS, Rule
from secure_endpoint.plan import (
    ADDRESS_NAME,
    BACKEND_NAME,
    DEFAULT_RULE_PRIORITY,
    DENY,
    POLICY_NAME,
    certificate_name,
    plan_rules,
)
from secure_endpoint.settings import EndpointSettings

SEED_BODY = '{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
BATCH_BODY = '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'


class LiveError(Exception):
    """One sentence saying what to do; no traceback."""


class Live:
    def __init__(self, project: str, *, credentials: Any = None, api_endpoint: str | None = None):
        from google.cloud import compute_v1

        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        common = {"credentials": credentials, "transport": "rest", "client_options": options}
        self.project = project
        self._addresses = compute_v1.GlobalAddressesClient(**common)
        self._policies = compute_v1.SecurityPoliciesClient(**common)
        self._backends = compute_v1.BackendServicesClient(**common)
        self._certificates = compute_v1.SslCertificatesClient(**common)

    @classmethod
    def with_default_credentials(cls, project: str) -> "Live":
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        except DefaultCredentialsError:
            raise LiveError(
                "no Google credentials found: run `gcloud auth application-default login`"
            ) from None
        return cls(project, credentials=credentials)

    def address(self) -> str:
        return self._get("global address", ADDRESS_NAME, self._addresses.get, address=ADDRESS_NAME).address

    def policy(self):
        return self._get("security policy", POLICY_NAME, self._policies.get, security_policy=POLICY_NAME)

    def backend(self):
        return self._get("backend service", BACKEND_NAME, self._backends.get, backend_service=BACKEND_NAME)

    def certificate(self, domain: str):
        name = certificate_name(domain)
        return self._get("certificate", name, self._certificates.get, ssl_certificate=name)

    def _get(self, kind: str, name: str, call, **names):
        from google.api_core import exceptions

        try:
            return call(project=self.project, **names)
        except exceptions.NotFound:
            raise LiveError(
                f"the {kind} {name} does not exist in project {self.project}: run `make deploy` first"
            ) from None
        except exceptions.Forbidden:
            raise LiveError(
                f"permission denied reading the {kind} {name} in project {self.project}: "
                "your account needs roles/compute.viewer there"
            ) from None
        except exceptions.GoogleAPICallError as error:
            raise LiveError(f"reading the {kind} {name} failed: {error.message or error}") from None


@dataclass(frozen=True)
class EndpointReport:
    url: str
    lines: list[str]


def endpoint_report(live: Live, settings: EndpointSettings) -> EndpointReport:
    address = live.address()
    base = f"https://{settings.domain}" if settings.domain else f"http://{address}"
    url = f"{base}/inference/"
    lines = [
        f"load balancer address: {address}",
        f"endpoint: {url}",
        f"one row:  curl -X POST {url} -H 'Content-Type: application/json' -d '{SEED_BODY}'",
        f"batch:    curl -X POST {url} -H 'Content-Type: application/json' -d '{BATCH_BODY}'",
    ]
    if settings.domain:
        certificate = live.certificate(settings.domain)
        status = certificate.managed.status
        domains = ", ".join(f"{d}: {s}" for d, s in certificate.managed.domain_status.items())
        lines.append(f"certificate {certificate.name}: {status}" + (f" ({domains})" if domains else ""))
        if status != "ACTIVE":
            lines.append(
                f"HTTPS answers once the certificate is ACTIVE: point {settings.domain}'s A record at "
                f"{address}; provisioning then takes up to an hour"
            )
    return EndpointReport(url=url, lines=lines)


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
    """Every difference between the live policy and what the code synthesizes, in plain words."""
    expected = plan_rules(settings)
    policy = live.policy()
    actual = live_rules(policy)
    differences = _range_drift(expected, actual) + _rule_drift(expected, actual)

    defaults = [rule for rule in actual if rule.priority == DEFAULT_RULE_PRIORITY]
    if not defaults or defaults[0].action != DENY or defaults[0].src_ip_ranges != ("*",):
        found = f"{defaults[0].action} on {list(defaults[0].src_ip_ranges)}" if defaults else "missing"
        differences.append(f"the default rule is {found}; expected {DENY} on ['*']")

    if not policy.adaptive_protection_config.layer7_ddos_defense_config.enable:
        differences.append("adaptive protection's layer-7 DDoS defense is off; the code turns it on")

    attached = live.backend().security_policy
    if not attached.endswith(f"/securityPolicies/{POLICY_NAME}") and attached != POLICY_NAME:
        differences.append(
            f"the backend service {BACKEND_NAME} is not guarded by {POLICY_NAME}: "
            f"its security policy is {attached or 'none'}"
        )
    return differences


def _allowed_ranges(rules: Iterable[Rule]) -> set:
    return {
        ipaddress.ip_network(text, strict=False)
        for rule in rules
        if rule.action in ALLOWING_ACTIONS and not rule.preview and rule.expression is None
        for text in rule.src_ip_ranges
        if text != "*"
    }


def _range_drift(expected: list[Rule], actual: list[Rule]) -> list[str]:
    want, have = _allowed_ranges(expected), _allowed_ranges(actual)
    key = lambda n: (n.version, n)  # noqa: E731
    return [
        *(f"{n} is allowed by the code but not by the live policy" for n in sorted(want - have, key=key)),
        *(f"{n} is allowed by the live policy but not by the code" for n in sorted(have - want, key=key)),
    ]


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
