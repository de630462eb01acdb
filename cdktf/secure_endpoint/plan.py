"""What the endpoint is made of, in plain Python: resource names, the exposure, the Cloud Armor rules.

`serving.ServingBackend` and `edge.ArmoredEdge` turn these into resources; `ops verify` compares
them with what is live without loading CDKTF.
"""

import hashlib

from secure_endpoint.allowlist import chunk_ranges
from secure_endpoint.armor import DEFAULT_RULE_PRIORITY, Rule
from secure_endpoint.settings import EndpointSettings

NAME = "inference"
SERVICE_NAME = NAME
ADDRESS_NAME = f"{NAME}-lb-ip"
ADDRESS_V6_NAME = f"{NAME}-lb-ipv6"
POLICY_NAME = f"{NAME}-policy"
BACKEND_NAME = f"{NAME}-backend"
URL_MAP_NAME = f"{NAME}-lb"
REDIRECT_MAP_NAME = f"{NAME}-http-redirect"
SSL_POLICY_NAME = f"{NAME}-ssl-policy"
# The service admits the load balancer only, its run.app URL is closed, and the invoker IAM check
# is off: the load balancer's clients are anonymous, so ingress plus Cloud Armor is the gate.
INGRESS = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
DEFAULT_URI_DISABLED = True
INVOKER_IAM_DISABLED = True
ALLOW_PRIORITY_START = 1000
# Cloud Armor stops at the first matching rule, lowest number first: WAF rules that are meant to
# guard allowed clients too must come before the allow rules.
WAF_PRIORITY_START = 100
PRIORITY_STEP = 10  # gaps leave room for rules added by hand
DENY = "deny(403)"
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


def plan_rules(settings: EndpointSettings) -> list[Rule]:
    """Every rule of the policy, in priority order."""
    rules: list[Rule] = []
    if settings.waf_rules:
        expressions = [(name, f"evaluatePreconfiguredWaf('{name}', {{'sensitivity': 1}})") for name in WAF_RULES]
        expressions.append((CVE_RULE, f"evaluatePreconfiguredExpr('{CVE_RULE}')"))
        for index, (name, expression) in enumerate(expressions):
            rules.append(
                Rule(
                    priority=WAF_PRIORITY_START + index * PRIORITY_STEP,
                    action=DENY,
                    description=f"WAF: {name}",
                    expression=expression,
                )
            )
    chunks = chunk_ranges(settings.allowed_ranges)
    action = "throttle" if settings.rate_limit_per_minute else "allow"
    for index, chunk in enumerate(chunks):
        rules.append(
            Rule(
                priority=ALLOW_PRIORITY_START + index * PRIORITY_STEP,
                action=action,
                description=f"ALLOWED_IP_RANGES part {index + 1} of {len(chunks)}",
                src_ip_ranges=tuple(chunk),
            )
        )
    rules.append(
        Rule(priority=DEFAULT_RULE_PRIORITY, action=DENY, description="default: deny everyone else", src_ip_ranges=("*",))
    )
    return rules


def certificate_name(domain: str) -> str:
    """Follows the domain, so a new domain makes a new certificate instead of editing one in use."""
    return f"{NAME}-cert-{hashlib.sha256(domain.encode()).hexdigest()[:8]}"
