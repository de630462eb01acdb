"""The endpoint's settings: declared once, read from the environment all at once, checked
before anything is synthesized. Every string among them is held to its grammar (secure_endpoint.grammar).
"""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from function import capacity
from secure_endpoint import exposure, grammar
from secure_endpoint.allowlist import CHECK_IP_URL, AllowlistError, Network, parse_allowlist
from secure_endpoint.allowlist_file import (
    COMMAND_VARIABLE, DESTROY, Entry, load_allowlist_file, now_utc,
)
from secure_endpoint.cloud_ranges import CloudRangesError, check_ranges
from secure_endpoint.declared import (
    Reading, Setting, SettingsError, boolean, fraction, positive_fraction, whole_number,
)
from secure_endpoint.grammar import Invalid, bucket_of
from secure_endpoint.image import tag_warning
from secure_endpoint.vpc_ranges import public_range_warning
from secure_endpoint.training_settings import TRAINING_SETTINGS, TrainingSettings, read_training

__all__ = ["SETTINGS", "STACK_NAME", "EndpointSettings", "SettingsError", "bucket_of"]

STACK_NAME = "secure-inference"
DEFAULT_REGION = "asia-northeast1"
REPOSITORY = "inference-on-secure-cloud-run"
# One instance serves about 18,100 single-row requests a second at 16 connections (`make bench`),
# about 0.06 ms each: 80 requests in flight keep a saturated instance's queue near 5 ms.
DEFAULT_CONCURRENCY = 80
DEFAULT_MAX_INSTANCES = 3
# The service's memory, and the most of it the worst requests the limits admit may take
# (function.capacity, measured): CONCURRENCY and MAX_BODY_BYTES are checked together against it.
SERVICE_MEMORY_MIB = 512
# The service's own default and ceiling (function/settings.py); a test keeps them equal.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MAX_BODY_BYTES_CEILING = 32 * 1024 * 1024
# The canary's share of requests, in percent: at 0 or 100 one of the two services would get none.
CANARY_PERCENT_MIN, CANARY_PERCENT_MAX = 1, 99
# A throttle rule's threshold count runs from 1 to 1,000,000 (Cloud Armor's rate limiting
# overview, https://cloud.google.com/armor/docs/rate-limiting-overview); the rule counts a minute.
MAX_RATE_LIMIT_PER_MINUTE = 1_000_000
MODEL_URI_EXPECTED = "the model's Cloud Storage URI, gs://bucket/object (`make publish` prints it)"


def _allowlist(raw: str) -> tuple[Network, ...]:
    try:
        networks = parse_allowlist(raw)
        check_ranges(networks)
    except (AllowlistError, CloudRangesError) as error:
        raise Invalid(str(error)) from None
    return networks


def _internal_allowlist(raw: str) -> tuple[Network, ...]:
    try:
        return parse_allowlist(raw, internal=True)
    except AllowlistError as error:
        raise Invalid(str(error)) from None


PROJECT_ID = Setting(
    "PROJECT_ID", "Google Cloud project", grammar.project_id,
    required="the id of your Google Cloud project (`gcloud config get project`)",
)  # fmt: skip
REGION = Setting(
    "REGION", "region of Cloud Run and the serverless NEG; the bootstrap's buckets and image "
    "repository live there too", grammar.region, DEFAULT_REGION,
)  # fmt: skip
ALLOWED_RANGES_EXPECTED = f"the addresses or CIDRs allowed in, such as 203.0.113.4 (yours: {CHECK_IP_URL})"
ALLOWED_IP_RANGES = Setting(
    "ALLOWED_IP_RANGES",
    "comma- or space-separated public IPv4/IPv6 addresses or CIDRs allowed through Cloud Armor: "
    "each no wider than /8 (IPv4) or /16 (IPv6), at most 2^24 IPv4 and 2^112 IPv6 addresses in "
    "all, none overlapping a public cloud's shared ranges by more than a /28; IPv6 ones need "
    "`IPV6=true`",
    _allowlist,
    shown_default="required, unless `ALLOWLIST_FILE` is set",
)
def _toml_path(raw: str) -> str:
    # A path, never Terraform: refused like any setting that could pass for an expression.
    if any(character in raw for character in "${}%") or not raw.isprintable():
        raise Invalid(f"expected the path of a TOML file, such as allowlist.toml, got {raw!r}")
    return raw


ALLOWLIST_FILE = Setting(
    "ALLOWLIST_FILE",
    "instead of `ALLOWED_IP_RANGES` (not both): a TOML file of `[[entry]]` tables, each with "
    "`range`, `owner`, `reason` and an optional `expires = 2027-03-31`; synth refuses an expired "
    "entry and warns 14 days ahead (`make destroy` is never blocked); see `allowlist.example.toml`",
    _toml_path,
)
MODEL_URI = Setting(
    "MODEL_URI", "`gs://` URI of the model the service loads (`make publish` prints it); "
    "`make upload` copies the model there", grammar.gs_uri, required=MODEL_URI_EXPECTED,
)  # fmt: skip
IMAGE = Setting(
    "IMAGE",
    "container image of the service; a tag in Artifact Registry is resolved to its digest at "
    "plan time, `…@sha256:…` pins one build",
    grammar.image,
    shown_default=f"`REGION-docker.pkg.dev/PROJECT_ID/{REPOSITORY}/inference:latest`",
)
DOMAIN = Setting(
    "DOMAIN", "HTTPS with a Google-managed certificate; port 80 redirects to it", grammar.domain,
    shown_default="unset (HTTP only: a warning at synth)",
)  # fmt: skip
PREVIOUS_DOMAIN = Setting(
    "PREVIOUS_DOMAIN",
    "during a change of `DOMAIN`: the old domain, whose certificate stays on the proxy until the "
    "new one is ACTIVE",
    grammar.domain,
)
IPV6 = Setting(
    "IPV6", "`true`: a global IPv6 address too, with the same forwarding rules; IPv6 ranges are "
    "refused without it", boolean, False,
)  # fmt: skip
TF_STATE_BUCKET = Setting(
    "TF_STATE_BUCKET", "Terraform state in that Cloud Storage bucket (`make bootstrap` makes it)",
    grammar.bucket, shown_default="local state (`terraform.secure-inference.tfstate`)",
)  # fmt: skip
MIN_INSTANCES = Setting(
    "MIN_INSTANCES", "Cloud Run instances kept running, even with no requests", whole_number(0), 0
)
MAX_INSTANCES = Setting(
    "MAX_INSTANCES", "most Cloud Run instances; at least `MIN_INSTANCES`", whole_number(1),
    DEFAULT_MAX_INSTANCES,
)  # fmt: skip
CONCURRENCY = Setting(
    "CONCURRENCY", "requests one instance handles at once, 1 to 1000", whole_number(1, 1000),
    DEFAULT_CONCURRENCY,
)  # fmt: skip
MAX_BODY_BYTES = Setting(
    "MAX_BODY_BYTES",
    f"passed to the service: the most bytes of a request body, 1 to {MAX_BODY_BYTES_CEILING} "
    f"(Cloud Run's own limit); with `CONCURRENCY`, the worst case must fit in the service's "
    f"{SERVICE_MEMORY_MIB} MiB",
    whole_number(1, MAX_BODY_BYTES_CEILING), DEFAULT_MAX_BODY_BYTES,
)  # fmt: skip
DELETION_PROTECTION = Setting(
    "DELETION_PROTECTION", "`true` makes Terraform refuse to delete the service; keep it `false` "
    "while you may `make destroy`", boolean, False,
)  # fmt: skip
WAF_RULES = Setting("WAF_RULES", "`false` drops the preconfigured WAF rules", boolean, True)
RATE_LIMIT_PER_MINUTE = Setting(
    "RATE_LIMIT_PER_MINUTE",
    "when set: each allowed client IP is throttled to that many requests a minute (429 beyond); "
    f"at most {MAX_RATE_LIMIT_PER_MINUTE:,}, Cloud Armor's largest threshold; 0 turns it off",
    whole_number(0, MAX_RATE_LIMIT_PER_MINUTE),
)
CANARY_MODEL_URI = Setting(
    "CANARY_MODEL_URI",
    "when set, with `CANARY_PERCENT`: the `gs://` URI of a second model, other than `MODEL_URI`, "
    "served by its own service `inference-canary` behind the same policy",
    grammar.gs_uri,
)
CANARY_PERCENT = Setting(
    "CANARY_PERCENT",
    f"with `CANARY_MODEL_URI`: the canary's share of requests, {CANARY_PERCENT_MIN} to "
    f"{CANARY_PERCENT_MAX}; the stable service takes the rest, and `X-Model-Canary: 1` always "
    "reaches the canary",
    whole_number(CANARY_PERCENT_MIN, CANARY_PERCENT_MAX),
)
PREDICTION_LOG_RATE = Setting(
    "PREDICTION_LOG_RATE",
    "passed to the service (both arms with a canary): the fraction of predictions it logs with "
    "their rows, answers and model version, from 0 to 1",
    fraction, 0.0, shown_default="`0` (none)",
)
LB_LOG_SAMPLE_RATE = Setting(
    "LB_LOG_SAMPLE_RATE",
    "the fraction of requests the load balancer logs, from 0 to 1; `make check-ip` replays, "
    "`make allowlist-diff` and audits see only the logged ones (docs/monitoring.md)",
    fraction, 1.0, shown_default="`1` (every request)",
)  # fmt: skip
DEFAULT_ALERT_5XX_RATIO = 0.05
DEFAULT_ALERT_P95_MS = 2000
DEFAULT_ALERT_DENIALS_PER_MINUTE = 100
# Five minutes: a p95 above that is an outage, which the 5xx and probe alerts catch.
MAX_ALERT_P95_MS = 300_000
ALERT_EMAIL = Setting(
    "ALERT_EMAIL",
    "when set: uptime checks that prove from outside that the load balancer answers 403, alert "
    "policies and a dashboard (docs/monitoring.md), notifying this address; public exposure only",
    grammar.email, shown_default="unset (no probes, alerts or dashboard)",
)  # fmt: skip
ALERT_5XX_RATIO = Setting(
    "ALERT_5XX_RATIO",
    "with `ALERT_EMAIL`: alert when this fraction of the load balancer's requests, above 0 and at "
    "most 1, answer 5xx over 5 minutes",
    positive_fraction, DEFAULT_ALERT_5XX_RATIO,
)  # fmt: skip
ALERT_P95_MS = Setting(
    "ALERT_P95_MS",
    f"with `ALERT_EMAIL`: alert when the load balancer's 95th percentile latency exceeds this many "
    f"milliseconds for 5 minutes, 1 to {MAX_ALERT_P95_MS:,}",
    whole_number(1, MAX_ALERT_P95_MS), DEFAULT_ALERT_P95_MS,
)  # fmt: skip
ALERT_DENIALS_PER_MINUTE = Setting(
    "ALERT_DENIALS_PER_MINUTE",
    "with `ALERT_EMAIL`: alert when Cloud Armor denies more than this many requests a minute over "
    "10 minutes; the uptime checks' own denials stay far below it",
    whole_number(1), DEFAULT_ALERT_DENIALS_PER_MINUTE,
)  # fmt: skip

# In the order the reference lists them.
SETTINGS = (
    PROJECT_ID, REGION, ALLOWED_IP_RANGES, ALLOWLIST_FILE, MODEL_URI, IMAGE, DOMAIN, PREVIOUS_DOMAIN, IPV6,
    TF_STATE_BUCKET, MIN_INSTANCES, MAX_INSTANCES, CONCURRENCY, MAX_BODY_BYTES, DELETION_PROTECTION, WAF_RULES,
    RATE_LIMIT_PER_MINUTE, CANARY_MODEL_URI, CANARY_PERCENT, PREDICTION_LOG_RATE,
    *exposure.SETTINGS, LB_LOG_SAMPLE_RATE, ALERT_EMAIL, ALERT_5XX_RATIO, ALERT_P95_MS,
    ALERT_DENIALS_PER_MINUTE,
    *TRAINING_SETTINGS,
)  # fmt: skip


@dataclass(frozen=True)
class EndpointSettings:
    project_id: str
    region: str
    allowed_ranges: tuple[Network, ...]
    model_uri: str
    image: str
    domain: str | None = None
    previous_domain: str | None = None
    ipv6: bool = False
    state_bucket: str | None = None
    min_instances: int = 0
    max_instances: int = DEFAULT_MAX_INSTANCES
    concurrency: int = DEFAULT_CONCURRENCY
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    deletion_protection: bool = False
    waf_rules: bool = True
    rate_limit_per_minute: int | None = None
    canary_model_uri: str | None = None
    canary_percent: int | None = None
    # Passed to both services: the fraction of predictions each logs with its rows and answer.
    prediction_log_rate: float = 0.0
    # ALLOWLIST_FILE's entries (owners, reasons, expiry) behind allowed_ranges; () without the file.
    allowlist_entries: tuple[Entry, ...] = ()
    # EXPOSURE=internal (secure_endpoint.exposure): the VPC, the address's subnet, the proxy-only
    # subnet to create (None: one exists), and clients from other regions.
    exposure: str = exposure.PUBLIC
    network: str | None = None
    subnet: str | None = None
    proxy_subnet_cidr: str | None = None
    global_access: bool = False
    # The load balancer's request logs, and what secure_endpoint.monitoring watches (ALERT_EMAIL unset: nothing).
    lb_log_sample_rate: float = 1.0
    alert_email: str | None = None
    alert_5xx_ratio: float = DEFAULT_ALERT_5XX_RATIO
    alert_p95_ms: int = DEFAULT_ALERT_P95_MS
    alert_denials_per_minute: int = DEFAULT_ALERT_DENIALS_PER_MINUTE

    @property
    def internal(self) -> bool:
        return self.exposure == exposure.INTERNAL
    # The training job and its schedule (TRAIN_JOB=true); None: neither.
    training: TrainingSettings | None = None

    def as_json(self) -> dict:
        """Every setting as JSON values: what a synthesized output was made from."""
        values = dataclasses.asdict(self)
        values["allowed_ranges"] = [str(network) for network in self.allowed_ranges]
        values["allowlist_entries"] = [entry.as_json() for entry in self.allowlist_entries]
        return values

    @property
    def model_bucket(self) -> str:
        return bucket_of(self.model_uri)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] = os.environ, *, now: datetime | None = None
    ) -> "EndpointSettings":
        """The settings, or one SettingsError naming every bad or missing one.

        `now`: the clock ALLOWLIST_FILE's expiry dates are judged by (aware; default: now).
        """
        read = Reading(environ)
        internal = exposure.is_internal(read)
        values: dict = {}
        for setting in SETTINGS:
            if setting in TRAINING_SETTINGS:  # read_training reads them, below
                continue
            if setting is ALLOWED_IP_RANGES:
                setting = exposure.allowlist_setting(setting, internal, _internal_allowlist)
            values[setting.name] = read(setting)
            if setting is ALLOWLIST_FILE:  # in its place among the others' problems
                entries = _read_allowlist_file(read, values, now, internal)
        _check_together(read, values)
        exposure.check(read, values)
        project_id, region = values["PROJECT_ID"], values["REGION"]
        training = read_training(
            read,
            default_image=f"{region}-docker.pkg.dev/{project_id}/{REPOSITORY}/inference-train:latest",
            model_uri=values["MODEL_URI"],
        )
        read.done()
        return cls(
            project_id=project_id,
            region=region,
            allowed_ranges=values["ALLOWED_IP_RANGES"],
            model_uri=values["MODEL_URI"],
            image=values["IMAGE"]
            or f"{region}-docker.pkg.dev/{project_id}/{REPOSITORY}/inference:latest",
            domain=values["DOMAIN"],
            previous_domain=values["PREVIOUS_DOMAIN"],
            ipv6=values["IPV6"],
            state_bucket=values["TF_STATE_BUCKET"],
            min_instances=values["MIN_INSTANCES"],
            max_instances=values["MAX_INSTANCES"],
            concurrency=values["CONCURRENCY"],
            max_body_bytes=values["MAX_BODY_BYTES"],
            deletion_protection=values["DELETION_PROTECTION"],
            waf_rules=values["WAF_RULES"],
            rate_limit_per_minute=values["RATE_LIMIT_PER_MINUTE"] or None,
            canary_model_uri=values["CANARY_MODEL_URI"],
            canary_percent=values["CANARY_PERCENT"],
            prediction_log_rate=values["PREDICTION_LOG_RATE"],
            allowlist_entries=entries,
            exposure=values["EXPOSURE"],
            network=values["NETWORK"],
            subnet=values["SUBNET"],
            proxy_subnet_cidr=str(cidr) if (cidr := values["PROXY_SUBNET_CIDR"]) else None,
            global_access=values["GLOBAL_ACCESS"],
            training=training,
            lb_log_sample_rate=values["LB_LOG_SAMPLE_RATE"],
            alert_email=values["ALERT_EMAIL"],
            alert_5xx_ratio=values["ALERT_5XX_RATIO"],
            alert_p95_ms=values["ALERT_P95_MS"],
            alert_denials_per_minute=values["ALERT_DENIALS_PER_MINUTE"],
        )

    def warnings(self) -> list[str]:
        """What a user should know about settings that are allowed but may not be what they meant."""
        found = []
        if self.domain is None and self.internal:
            found.append(
                "DOMAIN is unset: the internal load balancer answers over plain HTTP, so allowed "
                "clients send their requests and get their answers in clear across the VPC and "
                "any VPN or Interconnect joined to it. Set DOMAIN=api.example.com (a name in a "
                "public zone you own, for the certificate's DNS authorization) for HTTPS."
            )
        elif self.domain is None:
            found.append(
                "DOMAIN is unset: the load balancer answers over plain HTTP, so allowed clients "
                "send their requests and get their answers in clear over the internet. Set "
                "DOMAIN=api.example.com (a name you can point at the load balancer) for HTTPS "
                "with a Google-managed certificate; port 80 then redirects to it."
            )
        if self.internal:
            public = public_range_warning(self.allowed_ranges)
            if public:
                found.append(public)
        tag = tag_warning(self.image)
        if tag:
            found.append(tag)
        return found


def _read_allowlist_file(
    read: Reading, values: dict, now: datetime | None, internal: bool
) -> tuple[Entry, ...]:
    """ALLOWLIST_FILE's entries, their ranges put in ALLOWED_IP_RANGES' place; or the missing
    allowlist named. Expiry does not hold for `make destroy` (STACK_COMMAND=destroy)."""
    path, ranges = values["ALLOWLIST_FILE"], read.raw(ALLOWED_IP_RANGES)
    if path and ranges:
        read.refuse(
            "ALLOWLIST_FILE",
            f"expected either ALLOWLIST_FILE or ALLOWED_IP_RANGES, got both (ALLOWLIST_FILE="
            f"{path!r}, ALLOWED_IP_RANGES={ranges!r}); move the ranges into {path} as entries with "
            "an owner, and unset ALLOWED_IP_RANGES",
        )
        return ()
    if not path:
        if not ranges:
            read.refuse(
                "ALLOWED_IP_RANGES",
                f"required; expected {ALLOWED_RANGES_EXPECTED}, or ALLOWLIST_FILE=allowlist.toml "
                "(named entries), got nothing",
            )
        return ()
    destroying = read.environ.get(COMMAND_VARIABLE, "").strip() == DESTROY
    try:
        allowlist = load_allowlist_file(
            Path(path), now=now or now_utc(), enforce_expiry=not destroying, internal=internal
        )
    except AllowlistError as error:
        # The file's messages start with `ALLOWLIST_FILE: <path>`.
        read.problems.append(str(error))
        read.refused.add("ALLOWLIST_FILE")
        return ()
    values["ALLOWED_IP_RANGES"] = allowlist.networks
    return allowlist.entries


def _check_together(read: Reading, values: dict) -> None:
    """The checks that need two settings, run once both are good on their own."""
    if read.good("ALLOWED_IP_RANGES", "IPV6") and values["ALLOWED_IP_RANGES"] and not values["IPV6"]:
        # Without an IPv6 address on the load balancer no IPv6 client ever arrives: such a rule is dead.
        unreachable = [str(net) for net in values["ALLOWED_IP_RANGES"] if net.version == 6]
        if unreachable:
            read.refuse(
                "ALLOWED_IP_RANGES",
                f"{', '.join(unreachable)} can never match while the load balancer has no IPv6 "
                "address; set IPV6=true to give it one, or remove the IPv6 ranges",
            )
    low, high = values["MIN_INSTANCES"], values["MAX_INSTANCES"]
    if read.good("MIN_INSTANCES", "MAX_INSTANCES") and high < low:
        read.refuse("MAX_INSTANCES", f"expected at least MIN_INSTANCES ({low}), got {high}")
    _check_memory(read, values["CONCURRENCY"], values["MAX_BODY_BYTES"])
    _check_previous_domain(read, values["DOMAIN"], values["PREVIOUS_DOMAIN"])
    _check_canary(read, values)
    _check_alerts(read, values)


def _check_memory(read: Reading, concurrency: int, max_body_bytes: int) -> None:
    """Refuses a CONCURRENCY and MAX_BODY_BYTES whose worst requests could exceed the memory."""
    if not read.good("CONCURRENCY", "MAX_BODY_BYTES"):
        return
    memory = SERVICE_MEMORY_MIB * capacity.MIB
    if not capacity.fits(concurrency, max_body_bytes, memory):
        worst = capacity.worst_case_bytes(concurrency, max_body_bytes) / capacity.MIB
        read.refuse(
            "CONCURRENCY",
            f"with MAX_BODY_BYTES={max_body_bytes}, {concurrency} requests in flight could take "
            f"{worst:.0f} MiB of the service's {SERVICE_MEMORY_MIB} MiB (at most "
            f"{1 - capacity.HEADROOM:.0%} of it): lower CONCURRENCY or MAX_BODY_BYTES",
        )


def _check_previous_domain(read: Reading, domain: str | None, previous: str | None) -> None:
    """The domain being replaced: its certificate stays on the proxy until the new one is active."""
    if not previous or not read.good("DOMAIN"):
        return
    if not domain:
        read.refuse(
            "PREVIOUS_DOMAIN",
            f"expected only beside DOMAIN, while moving to a new domain; got {previous!r} with "
            "DOMAIN unset",
        )
    elif previous == domain:
        read.refuse(
            "PREVIOUS_DOMAIN",
            f"expected the domain being replaced, not DOMAIN itself; got {previous!r}",
        )


def _check_canary(read: Reading, values: dict) -> None:
    """A second model beside MODEL_URI and its share of traffic: both set, or neither."""
    uri = read.raw(CANARY_MODEL_URI)
    percent = read.raw(CANARY_PERCENT)
    if uri and not percent:
        read.refuse(
            "CANARY_PERCENT",
            f"required with CANARY_MODEL_URI={uri!r}; expected the canary's share of traffic, "
            f"a whole number from {CANARY_PERCENT_MIN} to {CANARY_PERCENT_MAX}, got nothing",
        )
    if percent and not uri:
        read.refuse(
            "CANARY_MODEL_URI",
            f"required with CANARY_PERCENT={percent!r}; expected the canary model's Cloud "
            "Storage URI, gs://bucket/object, got nothing",
        )
    canary = values["CANARY_MODEL_URI"]
    if canary is not None and canary == values["MODEL_URI"]:
        read.refuse(
            "CANARY_MODEL_URI",
            f"expected another model than MODEL_URI, got the same {canary!r}; a promoted canary "
            "is MODEL_URI alone, with CANARY_MODEL_URI and CANARY_PERCENT unset",
        )


def _check_alerts(read: Reading, values: dict) -> None:
    """The probes and alerts watch the public load balancer; the internal one has other metrics
    and would need private uptime checks (docs/monitoring.md)."""
    email = values["ALERT_EMAIL"]
    if email and values["EXPOSURE"] == exposure.INTERNAL:
        read.refuse(
            "ALERT_EMAIL",
            f"expected only with the public load balancer, got {email!r} with EXPOSURE=internal; "
            "its probes, alerts and dashboard watch the public one (docs/monitoring.md)",
        )
