"""What the internal mode (EXPOSURE=internal) is made of, in plain Python: names, ingress, rules.

`internal_edge.InternalEdge` turns these into resources; `ops` and `live_internal` read them
without loading CDKTF.

The Cloud Armor rules are the public policy's (`plan.plan_rules`): the WAF rules, the allowlist
chunked 10 ranges a rule, and an explicit default deny(403). A regional policy created without a
default rule gets one that *allows*, so the explicit one is what keeps the door shut. Its rules
count against SECURITY_POLICY_RULES_PER_REGION, a quota of the region of its own rather than the
global policies' SECURITY_POLICY_RULES: the same cap of 100 allow rules keeps the policy at 111
rules at most, and a public and an internal endpoint in one project do not compete for one quota.
Regional policies take `expr` and `preconfigured_waf_config` on their rules, so the preconfigured
WAF rules and the throttle stay; adaptive protection is not offered for them, so it is absent.
"""

from secure_endpoint.armor import Rule
from secure_endpoint.plan import NAME, plan_rules

# Every name differs from the public mode's, so neither mode's resources are ever taken for the other's.
ADDRESS_NAME = f"{NAME}-ilb-ip"
POLICY_NAME = f"{NAME}-ilb-policy"
URL_MAP_NAME = f"{NAME}-ilb"
REDIRECT_MAP_NAME = f"{NAME}-ilb-http-redirect"
HTTP_PROXY_NAME = f"{NAME}-ilb-http-proxy"
HTTPS_PROXY_NAME = f"{NAME}-ilb-https-proxy"
SSL_POLICY_NAME = f"{NAME}-ilb-ssl-policy"
CERTIFICATE_NAME = f"{NAME}-ilb-cert"
DNS_AUTHORIZATION_NAME = f"{NAME}-ilb-dns-auth"
PRIVATE_ZONE_NAME = f"{NAME}-ilb-private-zone"
DNS_TTL = 300
# Only the internal Application Load Balancer (and the VPC) may reach the service: external load
# balancers, which would bypass the regional policy, are refused by Cloud Run itself.
INGRESS = "INGRESS_TRAFFIC_INTERNAL_ONLY"
SCHEME = "INTERNAL_MANAGED"
# A serverless NEG backend of a regional managed load balancer: UTILIZATION with a capacity
# scaler (RATE is refused for serverless NEGs).
BALANCING_MODE = "UTILIZATION"
POLICY_TYPE = "CLOUD_ARMOR"


def forwarding_rule_name(scheme: str) -> str:
    return f"{NAME}-ilb-{scheme}"


def proxy_subnet_name(region: str) -> str:
    return f"{NAME}-proxy-only-{region}"


def plan_internal_rules(settings) -> list[Rule]:
    """The regional policy's rules: the same plan as the public policy's."""
    return plan_rules(settings)


def ingress(settings) -> str | None:
    """The Cloud Run ingress this mode needs; None: the public mode's own."""
    return INGRESS if settings.internal else None


# What the bootstrap enables beside its own APIs, only for what EXPOSURE=internal with DOMAIN builds.
DOMAIN_APIS = {
    "certificatemanager.googleapis.com": "the internal load balancer's regional certificate",
    "dns.googleapis.com": "the private zone that names the internal load balancer inside the VPC",
}


def extra_apis(exposure: str, domain: str | None) -> dict[str, str]:
    """API -> why, for what this mode needs past the public stack's APIs."""
    return dict(DOMAIN_APIS) if exposure == "internal" and domain else {}
