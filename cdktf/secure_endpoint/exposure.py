"""EXPOSURE and the internal mode's settings: the VPC, the subnet of the load balancer's address,
the proxy-only subnet, global access; and the checks that need them together.

Declared here, listed in settings.SETTINGS, read with the rest in one run.
"""

import ipaddress
import re
from dataclasses import replace

from secure_endpoint.declared import Reading, Setting, boolean
from secure_endpoint.grammar import Invalid, refuse_placeholder
from secure_endpoint.vpc_ranges import never_a_client

PUBLIC, INTERNAL = "public", "internal"
# Google's smallest proxy-only subnet is a /26 (64 addresses); /23 is its recommendation, since
# every regional Envoy load balancer of the VPC and region shares the subnet's proxies.
PROXY_SUBNET_NARROWEST, PROXY_SUBNET_RECOMMENDED = 26, 23
SUBNET_WIDEST = 8
# Compute Engine resource names (RFC 1035 labels): a lowercase letter first, at most 63 characters.
_NAME = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PROJECT = r"(?:[a-z](?:[-a-z0-9.:]{0,61}[a-z0-9])?)"
_API = r"(?:https://www\.googleapis\.com/compute/(?:v1|beta)/)?"
_NETWORK = re.compile(
    rf"(?P<name>{_NAME})|{_API}projects/{_PROJECT}/global/networks/(?P<linked>{_NAME})"
)
_SUBNET = re.compile(
    rf"(?P<name>{_NAME})|{_API}projects/{_PROJECT}/regions/(?P<region>[a-z]+-[a-z]+[0-9]+)"
    rf"/subnetworks/(?P<linked>{_NAME})"
)


def exposure(value: str) -> str:
    if value not in (PUBLIC, INTERNAL):
        raise Invalid(f"expected {PUBLIC} or {INTERNAL}, got {value!r}")
    return value


def network(value: str) -> str:
    refuse_placeholder(value)
    if not _NETWORK.fullmatch(value):
        raise Invalid(
            f"expected a VPC network's name, such as default, or its self link "
            f"projects/HOST_PROJECT/global/networks/NAME, got {value!r}"
        )
    return value


def subnet(value: str) -> str:
    refuse_placeholder(value)
    if not _SUBNET.fullmatch(value):
        raise Invalid(
            "expected a subnet's name, such as default, or its self link "
            f"projects/HOST_PROJECT/regions/REGION/subnetworks/NAME, got {value!r}"
        )
    return value


def subnet_region(value: str) -> str | None:
    """The region a subnet's self link names; None for a bare name (the stack's REGION)."""
    match = _SUBNET.fullmatch(value)
    return match["region"] if match else None


def proxy_subnet_cidr(value: str) -> ipaddress.IPv4Network:
    expected = (
        f"expected an IPv4 range from /{SUBNET_WIDEST} to /{PROXY_SUBNET_NARROWEST} that a "
        f"subnet may use, such as 10.129.0.0/{PROXY_SUBNET_RECOMMENDED}"
    )
    try:
        cidr = ipaddress.IPv4Network(value)
    except ValueError:
        raise Invalid(f"{expected}, got {value!r}") from None
    if not SUBNET_WIDEST <= cidr.prefixlen <= PROXY_SUBNET_NARROWEST:
        raise Invalid(f"{expected}, got {value!r} (a /{cidr.prefixlen})")
    block = never_a_client(cidr)
    if block is not None:
        raise Invalid(f"{expected}, got {value!r}, overlapping {block.network} ({block.name})")
    return cidr


EXPOSURE = Setting(
    "EXPOSURE",
    f"`{PUBLIC}`: a global external Application Load Balancer; `{INTERNAL}`: a regional internal "
    "one in `NETWORK`, reached only from inside the VPC (and networks joined to it), with the same "
    "allowlist of internal addresses",
    exposure, PUBLIC,
)  # fmt: skip
NETWORK = Setting(
    "NETWORK",
    f"with `EXPOSURE={INTERNAL}`: the existing VPC network of the load balancer, by name or self "
    "link (a Shared VPC's host project)",
    network, shown_default=f"required with `EXPOSURE={INTERNAL}`",
)  # fmt: skip
SUBNET = Setting(
    "SUBNET",
    f"with `EXPOSURE={INTERNAL}`: the existing subnet of `NETWORK` in `REGION` that the load "
    "balancer's internal address is taken from, by name or self link",
    subnet, shown_default=f"required with `EXPOSURE={INTERNAL}`",
)  # fmt: skip
PROXY_SUBNET_CIDR = Setting(
    "PROXY_SUBNET_CIDR",
    f"with `EXPOSURE={INTERNAL}`: the stack creates the proxy-only subnet of `NETWORK` in `REGION` "
    f"with this range (/{PROXY_SUBNET_NARROWEST} or wider, /{PROXY_SUBNET_RECOMMENDED} recommended); "
    "unset: one must exist already (one active per VPC and region, shared by all its regional "
    "Envoy load balancers)",
    proxy_subnet_cidr, shown_default="unset (an existing proxy-only subnet is used)",
)  # fmt: skip
GLOBAL_ACCESS = Setting(
    "GLOBAL_ACCESS",
    f"with `EXPOSURE={INTERNAL}`: `true` lets clients in other regions of the VPC reach the "
    "load balancer (they still pass the allowlist)",
    boolean, False,
)  # fmt: skip

INTERNAL_ONLY = (NETWORK, SUBNET, PROXY_SUBNET_CIDR, GLOBAL_ACCESS)
SETTINGS = (EXPOSURE, *INTERNAL_ONLY)


def is_internal(read: Reading) -> bool:
    """Whether EXPOSURE says internal, judged before the allowlist is read (it depends on it)."""
    return read.raw(EXPOSURE) == INTERNAL


def allowlist_setting(allowed: Setting, internal: bool, parse_internal) -> Setting:
    """ALLOWED_IP_RANGES as the mode reads it: VPC clients' addresses with EXPOSURE=internal."""
    if not internal:
        return allowed
    return replace(allowed, parse=parse_internal)


def check(read: Reading, values: dict) -> None:
    """The checks that need EXPOSURE beside other settings; each names the settings involved."""
    if not read.good("EXPOSURE"):
        return
    if values["EXPOSURE"] == PUBLIC:
        for setting in INTERNAL_ONLY:
            if read.raw(setting) and read.good(setting.name):
                read.refuse(
                    setting.name,
                    f"expected only with EXPOSURE={INTERNAL}, got {read.raw(setting)!r} with "
                    f"EXPOSURE={PUBLIC}; set EXPOSURE={INTERNAL} for the private endpoint, or "
                    "unset it",
                )
        return
    for setting in (NETWORK, SUBNET):
        if not read.raw(setting):
            read.refuse(
                setting.name,
                f"required with EXPOSURE={INTERNAL}; expected the "
                f"{'VPC network' if setting is NETWORK else 'subnet in REGION'} of the internal "
                "load balancer, by name or self link (`gcloud compute networks subnets list` "
                "shows both), got nothing",
            )
    if values["IPV6"] and read.good("IPV6"):
        read.refuse(
            "IPV6",
            f"expected false with EXPOSURE={INTERNAL}, got true: the internal load balancer "
            "serves IPv4 only for now; unset IPV6, or set EXPOSURE=public",
        )
    if values["PREVIOUS_DOMAIN"] and read.good("PREVIOUS_DOMAIN"):
        read.refuse(
            "PREVIOUS_DOMAIN",
            f"expected unset with EXPOSURE={INTERNAL}, got {values['PREVIOUS_DOMAIN']!r}: the "
            "internal load balancer's certificate follows DOMAIN alone",
        )
    linked = subnet_region(values["SUBNET"] or "")
    if linked and read.good("SUBNET", "REGION") and linked != values["REGION"]:
        read.refuse(
            "SUBNET",
            f"expected a subnet in REGION {values['REGION']}, got one in {linked}: the internal "
            "load balancer takes its address from a subnet of its own region",
        )
