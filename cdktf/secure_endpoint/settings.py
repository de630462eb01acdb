"""The endpoint's settings: read from the environment once, checked before anything is synthesized."""

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from secure_endpoint.allowlist import AllowlistError, Network
from secure_endpoint.allowlist_file import Entry, read_allowlist

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

# The README's placeholders (`your-project-id`, `YOUR_BUCKET`, `your-model-bucket`), a `<name>`
# left as written and a shell variable that was never expanded.
PLACEHOLDER = re.compile(r"^(?:your[-_.]?(?:project|bucket|model|state)|<.*>$|\$)", re.IGNORECASE)

_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z][a-z0-9-]{0,62}$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,220}[a-z0-9])?$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# ASCII digits only: int() also takes "１０", "1_000" and "+5", which no other tool reading the
# same variable would.
_WHOLE_NUMBER = re.compile(r"[0-9]+")


class SettingsError(ValueError):
    """Names the variable and its bad value."""


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
    # ALLOWLIST_FILE's entries (owners, reasons, expiry) behind allowed_ranges; () without the file.
    allowlist_entries: tuple[Entry, ...] = ()

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
        """`now`: the clock ALLOWLIST_FILE's expiry dates are judged by (aware; default: now)."""
        project_id = _required(environ, "PROJECT_ID", _PROJECT, "a Google Cloud project id")
        region = _optional(environ, "REGION", _REGION, "a region such as asia-northeast1") or DEFAULT_REGION
        try:
            allowlist = read_allowlist(environ, now=now)
        except AllowlistError as error:
            raise SettingsError(str(error)) from None
        allowed_ranges = allowlist.networks
        ipv6 = _bool(environ, "IPV6", False)
        _refuse_unreachable_ipv6(allowed_ranges, ipv6)
        min_instances = _int(environ, "MIN_INSTANCES", 0, minimum=0)
        max_instances = _int(environ, "MAX_INSTANCES", DEFAULT_MAX_INSTANCES, minimum=1)
        if max_instances < min_instances:
            raise SettingsError(
                f"MAX_INSTANCES: expected at least MIN_INSTANCES ({min_instances}), got {max_instances}"
            )
        rate_limit = _int(
            environ, "RATE_LIMIT_PER_MINUTE", 0, minimum=0, maximum=MAX_RATE_LIMIT_PER_MINUTE
        )
        domain = _optional(environ, "DOMAIN", _DOMAIN, "a domain name such as api.example.com")
        previous_domain = _previous_domain(environ, domain)
        model_uri = _model_uri(environ)
        canary_model_uri, canary_percent = _canary(environ, model_uri)
        return cls(
            project_id=project_id,
            region=region,
            allowed_ranges=allowed_ranges,
            model_uri=model_uri,
            image=environ.get("IMAGE", "").strip()
            or f"{region}-docker.pkg.dev/{project_id}/{REPOSITORY}/inference:latest",
            domain=domain,
            previous_domain=previous_domain,
            ipv6=ipv6,
            state_bucket=_optional(environ, "TF_STATE_BUCKET", _BUCKET, "a Cloud Storage bucket name"),
            min_instances=min_instances,
            max_instances=max_instances,
            concurrency=_int(environ, "CONCURRENCY", DEFAULT_CONCURRENCY, minimum=1, maximum=1000),
            deletion_protection=_bool(environ, "DELETION_PROTECTION", False),
            waf_rules=_bool(environ, "WAF_RULES", True),
            rate_limit_per_minute=rate_limit or None,
            canary_model_uri=canary_model_uri,
            canary_percent=canary_percent,
            prediction_log_rate=_fraction(environ, "PREDICTION_LOG_RATE", 0.0),
            allowlist_entries=allowlist.entries,
        )


def bucket_of(model_uri: str) -> str:
    return model_uri[len("gs://") :].split("/", 1)[0]


def _canary(environ: Mapping[str, str], model_uri: str) -> tuple[str | None, int | None]:
    """A second model beside MODEL_URI and its share of traffic: both set, or neither."""
    uri = environ.get("CANARY_MODEL_URI", "").strip()
    percent = environ.get("CANARY_PERCENT", "").strip()
    if not uri and not percent:
        return None, None
    if not percent:
        raise SettingsError(
            f"CANARY_PERCENT: required with CANARY_MODEL_URI={uri!r}; expected the canary's share of "
            f"traffic, a whole number from {CANARY_PERCENT_MIN} to {CANARY_PERCENT_MAX}, got nothing"
        )
    if not uri:
        raise SettingsError(
            f"CANARY_MODEL_URI: required with CANARY_PERCENT={percent!r}; expected the canary model's "
            "Cloud Storage URI, gs://bucket/object, got nothing"
        )
    canary_uri = _model_uri(environ, "CANARY_MODEL_URI")
    if canary_uri == model_uri:
        raise SettingsError(
            f"CANARY_MODEL_URI: expected another model than MODEL_URI, got the same {canary_uri!r}; "
            "a promoted canary is MODEL_URI alone, with CANARY_MODEL_URI and CANARY_PERCENT unset"
        )
    share = _int(environ, "CANARY_PERCENT", 0, minimum=CANARY_PERCENT_MIN, maximum=CANARY_PERCENT_MAX)
    return canary_uri, share


def _previous_domain(environ: Mapping[str, str], domain: str | None) -> str | None:
    """The domain being replaced: its certificate stays on the proxy until the new one is active."""
    previous = _optional(environ, "PREVIOUS_DOMAIN", _DOMAIN, "the domain name being replaced")
    if previous and not domain:
        raise SettingsError(
            f"PREVIOUS_DOMAIN: expected only beside DOMAIN, while moving to a new domain; "
            f"got {previous!r} with DOMAIN unset"
        )
    if previous and previous == domain:
        raise SettingsError(
            f"PREVIOUS_DOMAIN: expected the domain being replaced, not DOMAIN itself; got {previous!r}"
        )
    return previous


def _refuse_unreachable_ipv6(allowed_ranges: tuple[Network, ...], ipv6: bool) -> None:
    """Without an IPv6 address on the load balancer no IPv6 client ever arrives: such a rule is dead."""
    unreachable = [str(network) for network in allowed_ranges if network.version == 6]
    if unreachable and not ipv6:
        raise SettingsError(
            f"ALLOWED_IP_RANGES: {', '.join(unreachable)} can never match while the load balancer has "
            "no IPv6 address; set IPV6=true to give it one, or remove the IPv6 ranges"
        )


def _required(environ: Mapping[str, str], name: str, pattern: re.Pattern, what: str) -> str:
    value = _optional(environ, name, pattern, what)
    if value is None:
        raise SettingsError(f"{name}: required; expected {what}, got nothing")
    return value


def _optional(environ: Mapping[str, str], name: str, pattern: re.Pattern, what: str) -> str | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    _refuse_placeholder(name, value)
    if not pattern.match(value):
        raise SettingsError(f"{name}: expected {what}, got {value!r}")
    return value


def _model_uri(environ: Mapping[str, str], name: str = "MODEL_URI") -> str:
    value = environ.get(name, "").strip()
    bucket, _, path = value.removeprefix("gs://").partition("/")
    _refuse_placeholder(name, bucket)
    if not value.startswith("gs://") or not _BUCKET.match(bucket) or not path or path.endswith("/"):
        raise SettingsError(
            f"{name}: expected the model's Cloud Storage URI, gs://bucket/object, got {value!r}"
        )
    return value


def _refuse_placeholder(name: str, value: str) -> None:
    # Checked before the pattern, whose message would not say why `your-project-id` is wrong.
    if PLACEHOLDER.match(value):
        raise SettingsError(f"{name}: expected your own value, got the placeholder {value!r}")


def _int(
    environ: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw) if _WHOLE_NUMBER.fullmatch(raw) else minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
        raise SettingsError(f"{name}: expected a whole number {bounds}, got {raw!r}")
    return value


def _fraction(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:  # NaN fails too
        raise SettingsError(f"{name}: expected a fraction from 0 to 1, such as 0.01, got {raw!r}")
    return value


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}: expected true or false, got {environ[name]!r}")
