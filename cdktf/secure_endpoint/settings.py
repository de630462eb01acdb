"""The endpoint's settings: declared once, read from the environment all at once, checked
before anything is synthesized. Every string among them is held to its grammar (secure_endpoint.grammar).
"""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from secure_endpoint import grammar
from secure_endpoint.allowlist import CHECK_IP_URL, AllowlistError, Network, parse_allowlist
from secure_endpoint.declared import Reading, Setting, SettingsError, boolean, fraction, whole_number
from secure_endpoint.grammar import Invalid, bucket_of
from secure_endpoint.image import tag_warning
from secure_endpoint.training_settings import TRAINING_SETTINGS, TrainingSettings, read_training

__all__ = ["SETTINGS", "STACK_NAME", "EndpointSettings", "SettingsError", "bucket_of"]

STACK_NAME = "secure-inference"
DEFAULT_REGION = "asia-northeast1"
REPOSITORY = "inference-on-secure-cloud-run"
# One instance serves about 18,100 single-row requests a second at 16 connections (`make bench`),
# about 0.06 ms each: 80 requests in flight keep a saturated instance's queue near 5 ms.
DEFAULT_CONCURRENCY = 80
DEFAULT_MAX_INSTANCES = 3
# The canary's share of requests, in percent: at 0 or 100 one of the two services would get none.
CANARY_PERCENT_MIN, CANARY_PERCENT_MAX = 1, 99
# A throttle rule's threshold count runs from 1 to 1,000,000 (Cloud Armor's rate limiting
# overview, https://cloud.google.com/armor/docs/rate-limiting-overview); the rule counts a minute.
MAX_RATE_LIMIT_PER_MINUTE = 1_000_000
MODEL_URI_EXPECTED = "the model's Cloud Storage URI, gs://bucket/object (`make publish` prints it)"


def _allowlist(raw: str) -> tuple[Network, ...]:
    try:
        return parse_allowlist(raw)
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
ALLOWED_IP_RANGES = Setting(
    "ALLOWED_IP_RANGES",
    "comma- or space-separated public IPv4/IPv6 addresses or CIDRs allowed through Cloud Armor: "
    "each no wider than /8 (IPv4) or /16 (IPv6), at most 2^24 IPv4 and 2^112 IPv6 addresses in "
    "all; IPv6 ones need `IPV6=true`",
    _allowlist,
    required=f"the addresses or CIDRs allowed in, such as 203.0.113.4 (yours: {CHECK_IP_URL})",
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

# In the order the reference lists them.
SETTINGS = (
    PROJECT_ID, REGION, ALLOWED_IP_RANGES, MODEL_URI, IMAGE, DOMAIN, PREVIOUS_DOMAIN, IPV6,
    TF_STATE_BUCKET, MIN_INSTANCES, MAX_INSTANCES, CONCURRENCY, DELETION_PROTECTION, WAF_RULES,
    RATE_LIMIT_PER_MINUTE, CANARY_MODEL_URI, CANARY_PERCENT, PREDICTION_LOG_RATE,
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
    deletion_protection: bool = False
    waf_rules: bool = True
    rate_limit_per_minute: int | None = None
    canary_model_uri: str | None = None
    canary_percent: int | None = None
    # Passed to both services: the fraction of predictions each logs with its rows and answer.
    prediction_log_rate: float = 0.0
    # The training job and its schedule (TRAIN_JOB=true); None: neither.
    training: TrainingSettings | None = None

    def as_json(self) -> dict:
        """Every setting as JSON values: what a synthesized output was made from."""
        values = dataclasses.asdict(self)
        values["allowed_ranges"] = [str(network) for network in self.allowed_ranges]
        return values

    @property
    def model_bucket(self) -> str:
        return bucket_of(self.model_uri)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "EndpointSettings":
        """The settings, or one SettingsError naming every bad or missing one."""
        read = Reading(environ)
        values = {setting.name: read(setting) for setting in SETTINGS if setting not in TRAINING_SETTINGS}
        _check_together(read, values)
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
            deletion_protection=values["DELETION_PROTECTION"],
            waf_rules=values["WAF_RULES"],
            rate_limit_per_minute=values["RATE_LIMIT_PER_MINUTE"] or None,
            canary_model_uri=values["CANARY_MODEL_URI"],
            canary_percent=values["CANARY_PERCENT"],
            prediction_log_rate=values["PREDICTION_LOG_RATE"],
            training=training,
        )

    def warnings(self) -> list[str]:
        """What a user should know about settings that are allowed but may not be what they meant."""
        found = []
        if self.domain is None:
            found.append(
                "DOMAIN is unset: the load balancer answers over plain HTTP, so allowed clients "
                "send their requests and get their answers in clear over the internet. Set "
                "DOMAIN=api.example.com (a name you can point at the load balancer) for HTTPS "
                "with a Google-managed certificate; port 80 then redirects to it."
            )
        tag = tag_warning(self.image)
        if tag:
            found.append(tag)
        return found


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
    _check_previous_domain(read, values["DOMAIN"], values["PREVIOUS_DOMAIN"])
    _check_canary(read, values)


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
