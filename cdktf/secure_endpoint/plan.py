"""What the endpoint is made of, in plain Python: resource names, the exposure, the Cloud Armor rules.

`serving.ServingBackend` and `edge.ArmoredEdge` turn these into resources; `ops verify` compares
them with what is live without loading CDKTF.
"""

import hashlib
from dataclasses import dataclass

from secure_endpoint.allowlist import chunk_ranges
from secure_endpoint.allowlist_file import owners_of, rule_description
from secure_endpoint.armor import DEFAULT_RULE_PRIORITY, RateLimit, Rule
from secure_endpoint.settings import EndpointSettings, bucket_of

NAME = "inference"
SERVICE_NAME = NAME
ADDRESS_NAME = f"{NAME}-lb-ip"
ADDRESS_V6_NAME = f"{NAME}-lb-ipv6"
POLICY_NAME = f"{NAME}-policy"
BACKEND_NAME = f"{NAME}-backend"
URL_MAP_NAME = f"{NAME}-lb"
REDIRECT_MAP_NAME = f"{NAME}-http-redirect"
SSL_POLICY_NAME = f"{NAME}-ssl-policy"
HTTP_PROXY_NAME = f"{NAME}-http-proxy"
HTTPS_PROXY_NAME = f"{NAME}-https-proxy"
# The HTTPS proxy's SSL policy: no TLS below 1.2, and only modern cipher suites.
SSL_PROFILE, MIN_TLS_VERSION = "MODERN", "TLS_1_2"
STABLE, CANARY = "stable", "canary"
# A request carrying this header with this value always reaches the canary, whatever the split.
CANARY_HEADER, CANARY_HEADER_VALUE = "X-Model-Canary", "1"
SPLIT_MATCHER_NAME = "split"
CANARY_ROUTE_PRIORITY = 1
# The service admits the load balancer only, its run.app URL is closed, and the invoker IAM check
# is off: the load balancer's clients are anonymous, so ingress plus Cloud Armor is the gate.
INGRESS = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
DEFAULT_URI_DISABLED = True
INVOKER_IAM_DISABLED = True
ALLOW_PRIORITY_START = 1000
# Throttle rules have their own band: switching RATE_LIMIT_PER_MINUTE on or off then removes the
# allow rules and adds throttle rules (or the reverse) instead of patching a rule from one action
# to the other at the same priority, which the provider sends without rate_limit_options and the
# API refuses (hashicorp/terraform-provider-google, fixed in 7.26).
THROTTLE_PRIORITY_START = 2000
# Cloud Armor stops at the first matching rule, lowest number first: WAF rules that are meant to
# guard allowed clients too must come before the allow rules.
WAF_PRIORITY_START = 100
PRIORITY_STEP = 10  # gaps leave room for rules added by hand
DENY = "deny(403)"
# The WAF rules read JSON bodies as JSON rather than as opaque text: fewer false positives.
JSON_PARSING = "STANDARD"
# What a throttle rule sets besides its threshold: 429 above it, counted for each client address.
THROTTLE_INTERVAL_SEC = 60
THROTTLE_KEY = "IP"
# Preconfigured WAF rules (OWASP CRS 3.3) at sensitivity 1, the fewest false positives.
WAF_RULES = (
    "sqli-v33-stable",
    "xss-v33-stable",
    "lfi-v33-stable",
    "rfi-v33-stable",
    "rce-v33-stable",
    "methodenforcement-v33-stable",
    "scannerdetection-v33-stable",
    "protocolattack-v33-stable",
    "sessionfixation-v33-stable",
)
CVE_RULE = "cve-canary"  # Log4Shell and other named CVEs
# Every rule with an expression counts against the project's quota of rules with advanced match
# conditions, besides SECURITY_POLICY_RULES, and an expression holds at most five subexpressions
# (https://cloud.google.com/armor/docs/rules-language-reference): the WAF sets are joined with
# `||`, five to a rule. The CVE rule keeps a rule of its own, its expression exactly
# `evaluatePreconfiguredExpr('cve-canary')`: that is how policy scanners (checkov's CKV_GCP_73)
# recognise Log4Shell protection. Ten rules become three.
WAF_CALLS_PER_RULE = 5
# Short names keep a rule's description within the API's 64 characters.
_WAF_SHORT_NAMES = {
    "methodenforcement": "method",
    "scannerdetection": "scanner",
    "protocolattack": "protocol",
    "sessionfixation": "session",
    CVE_RULE: "cve-canary (Log4Shell and other named CVEs)",
}


def waf_calls() -> list[tuple[str, str]]:
    """(rule set, the call that evaluates it), in the order they are folded into rules."""
    calls = [(name, f"evaluatePreconfiguredWaf('{name}', {{'sensitivity': 1}})") for name in WAF_RULES]
    calls.append((CVE_RULE, f"evaluatePreconfiguredExpr('{CVE_RULE}')"))
    return calls


def waf_groups() -> list[list[tuple[str, str]]]:
    """The calls of each WAF rule: the sets five to a rule, then the CVE rule alone."""
    sets, cve = waf_calls()[:-1], waf_calls()[-1:]
    return [sets[i : i + WAF_CALLS_PER_RULE] for i in range(0, len(sets), WAF_CALLS_PER_RULE)] + [cve]


def _short(name: str) -> str:
    base = name.removesuffix("-v33-stable")
    return _WAF_SHORT_NAMES.get(base, base)


def plan_rules(settings: EndpointSettings) -> list[Rule]:
    """Every rule of the policy, in priority order."""
    rules: list[Rule] = []
    if settings.waf_rules:
        groups = waf_groups()
        for index, group in enumerate(groups):
            rules.append(
                Rule(
                    priority=WAF_PRIORITY_START + index * PRIORITY_STEP,
                    action=DENY,
                    description=f"WAF part {index + 1} of {len(groups)}: "
                    + ", ".join(_short(name) for name, _ in group),
                    expression=" || ".join(call for _, call in group),
                )
            )
    chunks = chunk_ranges(settings.allowed_ranges)
    if settings.rate_limit_per_minute:
        action, start = "throttle", THROTTLE_PRIORITY_START
        rate_limit = RateLimit(
            count=settings.rate_limit_per_minute, interval_sec=THROTTLE_INTERVAL_SEC, enforce_on_key=THROTTLE_KEY
        )
    else:
        action, start, rate_limit = "allow", ALLOW_PRIORITY_START, None
    for index, chunk in enumerate(chunks):
        rules.append(
            Rule(
                priority=start + index * PRIORITY_STEP,
                action=action,
                description=(
                    rule_description(owners_of(settings.allowlist_entries, chunk), index, len(chunks))
                    if settings.allowlist_entries
                    else f"ALLOWED_IP_RANGES part {index + 1} of {len(chunks)}"
                ),
                src_ip_ranges=tuple(chunk),
                rate_limit=rate_limit,
            )
        )
    rules.append(
        Rule(priority=DEFAULT_RULE_PRIORITY, action=DENY, description="default: deny everyone else", src_ip_ranges=("*",))
    )
    return rules


def certificate_name(domain: str) -> str:
    """Follows the domain, so a new domain makes a new certificate instead of editing one in use."""
    return f"{NAME}-cert-{hashlib.sha256(domain.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Arm:
    """One model behind the load balancer, with its own service, identity, NEG and backend.

    The stable arm's names are the ones the stack had before canaries existed, so adding or
    removing a canary never renames, and so never replaces, anything of the stable arm.
    """

    role: str
    model_uri: str
    percent: int

    @property
    def suffix(self) -> str:
        return "" if self.role == STABLE else f"-{self.role}"

    @property
    def service_name(self) -> str:
        return f"{SERVICE_NAME}{self.suffix}"

    @property
    def backend_name(self) -> str:
        return f"{NAME}{self.suffix}-backend"

    @property
    def account_id(self) -> str:
        return f"{SERVICE_NAME}{self.suffix}-run"

    @property
    def model_bucket(self) -> str:
        return bucket_of(self.model_uri)

    def neg_name(self, region: str) -> str:
        return f"{SERVICE_NAME}{self.suffix}-neg-{region}"


def plan_arms(settings: EndpointSettings) -> tuple[Arm, ...]:
    """The stable arm, and the canary when CANARY_MODEL_URI is set; percents add up to 100."""
    if settings.canary_model_uri is None or settings.canary_percent is None:
        return (Arm(STABLE, settings.model_uri, 100),)
    return (
        Arm(STABLE, settings.model_uri, 100 - settings.canary_percent),
        Arm(CANARY, settings.canary_model_uri, settings.canary_percent),
    )


def arm_service_names() -> dict[str, str]:
    """Backend service name -> Cloud Run service name, for every role an arm can have."""
    arms = [Arm(role, "", 0) for role in (STABLE, CANARY)]
    return {arm.backend_name: arm.service_name for arm in arms}


@dataclass(frozen=True)
class Routing:
    """Where the serving URL map sends requests: backend service name -> weight, and the backend
    that a request with CANARY_HEADER reaches (None: no such route, it takes the split too)."""

    weights: dict[str, int]
    header_route: str | None = None

    def shares(self) -> str:
        total = sum(self.weights.values()) or 1
        return ", ".join(f"{name} {weight * 100 / total:g}%" for name, weight in self.weights.items())


def plan_routing(settings: EndpointSettings) -> Routing:
    arms = plan_arms(settings)
    canary = [arm.backend_name for arm in arms if arm.role == CANARY]
    return Routing(weights={arm.backend_name: arm.percent for arm in arms}, header_route=canary[0] if canary else None)
