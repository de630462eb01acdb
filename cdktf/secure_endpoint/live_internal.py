"""The deployed private endpoint (EXPOSURE=internal), read through the regional Compute APIs and
the Cloud Run Admin API: what `make endpoint` prints and what `make verify` compares.

Every way to the service is a backend service on a serverless NEG of the service: the checks
find each by identity (self link), not by a name another resource could carry. The regional
Cloud Armor policy must be attached to every backend of the code, its rules must be the code's,
and its default rule an explicit deny(403) (a regional policy made without one allows).
"""

from secure_endpoint import internal_plan as names
from secure_endpoint.armor import DEFAULT_RULE_PRIORITY, Rule
from secure_endpoint.live import BATCH_BODY, SEED_BODY, Live, live_rules
from secure_endpoint.plan import DEFAULT_URI_DISABLED, DENY, plan_arms
from secure_endpoint.settings import EndpointSettings


class InternalLive(Live):
    """`Live` with the regional clients of the internal load balancer."""

    def __init__(self, project: str, *, credentials=None, api_endpoint: str | None = None):
        super().__init__(project, credentials=credentials, api_endpoint=api_endpoint)
        from google.cloud import compute_v1

        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        common = {"credentials": credentials, "transport": "rest", "client_options": options}
        self._region_addresses = compute_v1.AddressesClient(**common)
        self._region_policies = compute_v1.RegionSecurityPoliciesClient(**common)
        self._region_backends = compute_v1.RegionBackendServicesClient(**common)
        self._region_rules = compute_v1.ForwardingRulesClient(**common)

    def internal_address(self, region: str) -> str:
        name = names.ADDRESS_NAME
        return self._get(
            "internal address", name, self._region_addresses.get, region=region, address=name
        ).address

    def region_policy(self, region: str):
        name = names.POLICY_NAME
        return self._get(
            "regional security policy",
            name,
            self._region_policies.get,
            region=region,
            security_policy=name,
        )

    def region_backend(self, region: str, name: str):
        return self._get(
            "regional backend service",
            name,
            self._region_backends.get,
            region=region,
            backend_service=name,
        )

    def region_forwarding_rules(self, region: str) -> list:
        return self._call(
            f"forwarding rules of {region}", "roles/compute.viewer",
            lambda **names_: list(self._region_rules.list(**names_)), project=self.project, region=region,
        )  # fmt: skip


def internal_endpoint_lines(live: InternalLive, settings: EndpointSettings) -> list[str]:
    address = live.internal_address(settings.region)
    base = f"https://{settings.domain}" if settings.domain else f"http://{address}"
    url = f"{base}/inference/"
    lines = [
        f"internal load balancer address: {address} (in {settings.subnet}, network {settings.network})",
        f"endpoint: {url}",
        "from a VM or a Cloud Run job in the VPC whose address ALLOWED_IP_RANGES holds"
        + ("" if settings.global_access else f", in {settings.region}")
        + ":",
        f"one row:  curl -X POST {url} -H 'Content-Type: application/json' -d '{SEED_BODY}'",
        f"batch:    curl -X POST {url} -H 'Content-Type: application/json' -d '{BATCH_BODY}'",
    ]
    if settings.domain:
        lines += [
            (
                f"DNS: {settings.domain} resolves to {address} inside {settings.network} (private "
                f"zone {names.PRIVATE_ZONE_NAME}); on premises, forward it to Cloud DNS or add the "
                "A record"
            ),
            (
                "certificate: add the CNAME record of `terraform output dns_authorization_record` "
                f"(cdktf.out/stacks/secure-inference) to the public zone of {settings.domain}; the "
                "certificate is issued once it resolves"
            ),
        ]
    return lines


def internal_drift(live: InternalLive, settings: EndpointSettings) -> list[str]:
    """Every difference between the live private endpoint and the code, in plain words."""
    policy = live.region_policy(settings.region)
    differences = _policy_drift(policy, names.plan_internal_rules(settings))
    arms = plan_arms(settings)
    ours = {}
    for arm in arms:
        backend = live.region_backend(settings.region, arm.backend_name)
        ours[backend.self_link] = arm
        differences += _backend_drift(backend, policy.self_link)
        service = live.service(settings.region, arm.service_name)
        differences += _service_drift(service, arm.service_name)
    differences += _other_paths(live, settings, ours)
    differences += _forwarding_rule_drift(live, settings.region)
    return differences


def _policy_drift(policy, expected: list[Rule]) -> list[str]:
    differences = []
    if policy.type_ != names.POLICY_TYPE:
        differences.append(
            f"the regional policy {policy.name} is of type {policy.type_ or 'unset'}; expected {names.POLICY_TYPE}"
        )
    actual = live_rules(policy)
    defaults = [rule for rule in actual if rule.priority == DEFAULT_RULE_PRIORITY]
    if (
        not defaults
        or defaults[0].action != DENY
        or defaults[0].src_ip_ranges != ("*",)
        or defaults[0].preview
    ):
        found = (
            f"{defaults[0].action} on {list(defaults[0].src_ip_ranges)}"
            + (" in preview" if defaults[0].preview else "")
            if defaults
            else "missing"
        )
        differences.append(
            f"the regional policy's default rule is {found}; expected an enforced {DENY} on ['*'] "
            "(a regional policy without one lets everyone in)"
        )
    want, have = {_key(r): r for r in expected}, {_key(r): r for r in actual}
    for key in sorted(set(have) - set(want)):
        differences.append(
            f"the regional policy has {_describe(have[key])}, which the code does not make"
        )
    for key in sorted(set(want) - set(have)):
        differences.append(
            f"the regional policy lacks {_describe(want[key])}, which the code makes"
        )
    return differences


def _key(rule: Rule) -> tuple:
    return (
        rule.priority,
        rule.action,
        tuple(sorted(rule.src_ip_ranges)),
        rule.expression or "",
        rule.preview,
    )


def _describe(rule: Rule) -> str:
    what = rule.expression or ", ".join(rule.src_ip_ranges)
    return f"rule {rule.priority} ({rule.action} {what}{', in preview' if rule.preview else ''})"


def _backend_drift(backend, policy_link: str) -> list[str]:
    differences = []
    if backend.security_policy != policy_link:
        found = backend.security_policy or "NO security policy"
        differences.append(
            f"the regional backend service {backend.name} has {found}; expected {policy_link}: "
            "requests reach the service without this Cloud Armor policy. Run `make deploy` again"
        )
    if backend.load_balancing_scheme != names.SCHEME:
        differences.append(
            f"the regional backend service {backend.name} is {backend.load_balancing_scheme}; expected {names.SCHEME}"
        )
    return differences


def _service_drift(service, name: str) -> list[str]:
    differences = []
    if service.ingress.name != names.INGRESS:
        differences.append(
            f"the Cloud Run service {name} has ingress {service.ingress.name}; expected {names.INGRESS}"
        )
    if bool(service.default_uri_disabled) != DEFAULT_URI_DISABLED:
        differences.append(
            f"the Cloud Run service {name} answers on its run.app URL (defaultUriDisabled is off), "
            "past the load balancer and Cloud Armor"
        )
    return differences


def _other_paths(live: InternalLive, settings: EndpointSettings, ours: dict) -> list[str]:
    """Any NEG of the service but the code's, and any backend service on one but the code's."""
    services = {arm.service_name for arm in plan_arms(settings)}
    own_negs = {arm.neg_name(settings.region) for arm in plan_arms(settings)}
    reaching = {}
    differences = []
    for group in live.all_network_endpoint_groups():
        if (
            group.cloud_run.service in services
            and group.region.rsplit("/", 1)[-1] == settings.region
        ):
            reaching[group.self_link] = group
            if group.name not in own_negs:
                differences.append(
                    f"the network endpoint group {group.name} also points at the Cloud Run service "
                    f"{group.cloud_run.service}; the code makes only {', '.join(sorted(own_negs))}"
                )
    for backend in live.all_backend_services():
        if backend.self_link in ours:
            continue
        if any(entry.group in reaching for entry in backend.backends):
            where = "global" if "/global/" in backend.self_link else "regional"
            differences.append(
                f"the {where} backend service {backend.name} ({backend.load_balancing_scheme}) reaches the "
                "service past the internal load balancer's Cloud Armor policy"
            )
    return differences


def _forwarding_rule_drift(live: InternalLive, region: str) -> list[str]:
    """The code's forwarding rules are internal, on the internal address."""
    address = live.internal_address(region)
    differences = []
    ours = (names.forwarding_rule_name("http"), names.forwarding_rule_name("https"))
    for rule in live.region_forwarding_rules(region):
        scheme, ip = rule.load_balancing_scheme, rule.I_p_address
        if rule.name in ours and (scheme != names.SCHEME or ip != address):
            differences.append(
                f"the forwarding rule {rule.name} is {scheme} on {ip}; "
                f"expected {names.SCHEME} on {address}"
            )
    return differences
