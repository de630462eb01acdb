"""Which Cloud Run service a serverless NEG's URL mask sends a request to.

A Cloud Run NEG names its service in `cloudRun.service`, or leaves it to `cloudRun.urlMask`: a
template of the request's host and path in which `<service>` and `<tag>` stand for the service and
the revision tag, parsed from each request. The Compute API reference's own example: the mask
`<tag>.domain.com/<service>` parses `foo1.domain.com/bar1` to service `bar1`, tag `foo1`, so one NEG
reaches every service of its region. Service and tag names are RFC 1035 labels (1-63 characters),
which is what a placeholder matches here. Beyond the example, this module reads a mask as the
serverless NEG overview shows them (`example.com/<service>`, `<service>.example.com`): the host
part matches the whole host, a mask without a host (starting with `/`) any host, and the path
part whole segments from the start of the path, the rest going to the service.

The client chooses the host and path it sends, so a mask with `<service>` reaches every service
whose name fits where the placeholder stands, whatever the load balancer in front meant to send:
`reaches` errs on the side of reporting.
"""

import re

# RFC 1035: a letter, then letters, digits and hyphens, not ending in a hyphen; at most 63.
LABEL = r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PLACEHOLDER = re.compile(r"<(service|tag)>")
PLACEHOLDERS = ("service", "tag")


class UrlMaskError(ValueError):
    """Not a URL mask: a placeholder other than <service> and <tag>, or one used twice."""


def _pattern(template: str) -> str:
    parts, seen, position = [], set(), 0
    for match in re.finditer(r"<([^<>]*)>", template):
        name = match.group(1)
        if name not in PLACEHOLDERS or name in seen:
            raise UrlMaskError(f"expected <service> and <tag> at most once each, got <{name}> in {template!r}")
        seen.add(name)
        parts.append(re.escape(template[position : match.start()]))
        parts.append(f"(?P<{name}>{LABEL})")
        position = match.end()
    parts.append(re.escape(template[position:]))
    return "".join(parts)


def _split(url: str) -> tuple[str, str]:
    """`host/path` -> (host, /path); a scheme is dropped and a path-only value has no host."""
    url = re.sub(r"^[a-z]+://", "", url.strip(), flags=re.IGNORECASE)
    host, slash, path = url.partition("/")
    return host.lower(), slash + path


def parse(mask: str, url: str) -> dict[str, str] | None:
    """The placeholders' values for a request to `url` (`host/path`), or None when the mask does
    not match it. `parse("<tag>.domain.com/<service>", "foo1.domain.com/bar1")` gives
    `{"tag": "foo1", "service": "bar1"}`."""
    mask_host, mask_path = _split(mask)
    host, path = _split(url)
    values: dict[str, str] = {}
    if mask_host:
        found = re.fullmatch(_pattern(mask_host), host)
        if found is None:
            return None
        values.update({k: v for k, v in found.groupdict().items() if v is not None})
    if mask_path not in ("", "/"):
        # The mask's path matches whole segments from the start; what follows goes to the service.
        found = re.match(_pattern(mask_path.rstrip("/")) + r"(?:/|$)", path or "/")
        if found is None:
            return None
        values.update({k: v for k, v in found.groupdict().items() if v is not None})
    return values


def example_url(mask: str, service: str, tag: str = "t") -> str:
    """The request a client would send for `service` through this mask."""
    return _PLACEHOLDER.sub(lambda m: service if m.group(1) == "service" else tag, mask)


def reaches(mask: str, service: str) -> bool:
    """Whether some request through this mask parses to `service`. Where the mask could split a
    label two ways (`<tag>-<service>` and a service named `inference-canary`), the request is
    counted as reaching the service: which way Google parses it is not documented."""
    if "<service>" not in (mask or "") or not re.fullmatch(LABEL, service):
        return False
    try:
        _pattern(mask)
    except UrlMaskError:
        return False  # the API refuses such a mask, so no NEG carries it
    fixed = mask.replace("<service>", service)
    return parse(fixed, example_url(mask, service)) is not None
