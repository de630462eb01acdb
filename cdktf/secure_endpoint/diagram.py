"""The picture of the serving stack, drawn from its synthesized Terraform JSON (`make diagram`).

Reads only `cdk.tf.json`, never the constructs: the graph is the resources on the request path
joined by the `${type.name.attribute}` references Terraform itself follows, so the picture shows
what would be applied, whatever produced the JSON.

    client -> address -> forwarding rule -> proxy -> URL map -> backend service -> NEG
           -> Cloud Run service -> service account -> model bucket
    (backend service -> security policy; HTTPS proxy -> certificate, SSL policy)

Two links are not references in the JSON, and are read from its values instead: a serverless NEG
names its Cloud Run service (and region) as strings, and a service account reaches a bucket through
a `google_storage_bucket_iam_member` whose `member` refers to the account.
"""

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The request path's resource types, in the order a request meets them (global and regional
# load balancers alike), with the words the picture gives each.
KINDS = {
    "google_compute_global_address": "address",
    "google_compute_address": "address",
    "google_compute_global_forwarding_rule": "forwarding rule",
    "google_compute_forwarding_rule": "forwarding rule",
    "google_compute_target_http_proxy": "HTTP proxy",
    "google_compute_region_target_http_proxy": "HTTP proxy",
    "google_compute_target_https_proxy": "HTTPS proxy",
    "google_compute_region_target_https_proxy": "HTTPS proxy",
    "google_compute_managed_ssl_certificate": "certificate",
    "google_compute_region_ssl_certificate": "certificate",
    "google_compute_ssl_certificate": "certificate",
    "google_compute_ssl_policy": "SSL policy",
    "google_compute_region_ssl_policy": "SSL policy",
    "google_compute_url_map": "URL map",
    "google_compute_region_url_map": "URL map",
    "google_compute_backend_service": "backend service",
    "google_compute_region_backend_service": "backend service",
    "google_compute_security_policy": "Cloud Armor policy",
    "google_compute_region_security_policy": "Cloud Armor policy",
    "google_compute_region_network_endpoint_group": "serverless NEG",
    "google_cloud_run_v2_service": "Cloud Run service",
    "google_service_account": "service account",
}
ADDRESS_KINDS = {"google_compute_global_address", "google_compute_address"}
BUCKET_GRANT = "google_storage_bucket_iam_member"
CLIENT = "client"
REFERENCE = re.compile(r"\$\{([a-z0-9_]+)\.([A-Za-z0-9_-]+)\.[a-z_]+\}")
# Fields that order the apply or describe a resource, and are no part of a request's way.
NOT_ON_THE_PATH = {"depends_on", "lifecycle", "triggers", "provider", "description"}


class DiagramError(Exception):
    """The file is not a synthesized serving stack."""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


def _walk(value, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Every string in a resource's JSON, with the keys and items that lead to it."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in NOT_ON_THE_PATH:
                yield from _walk(item, (*path, (key, value)))
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, path)
    elif isinstance(value, str):
        yield path, value


def _node_id(kind: str, resource: dict, key: str) -> str:
    # The resource's own name rather than the toolchain's logical id, which carries a hash.
    name = resource.get("name") or resource.get("account_id") or key
    return f"{kind}.{name}"


def _route_label(path: tuple) -> str:
    """What sends a request down this reference of a URL map: a weight, a header, the default."""
    keys = [key for key, _ in path]
    if "weighted_backend_services" in keys:
        holder = path[-1][1]
        weight = holder.get("weight")
        return f"{weight}%" if weight is not None else ""
    if "route_rules" in keys:
        rule = next(parent for _, parent in reversed(path) if "match_rules" in parent)
        headers = [
            f"{match['header_name']}: {match.get('exact_match', '*')}"
            for matches in rule["match_rules"]
            for match in matches.get("header_matches", [])
        ]
        return ", ".join(headers) or "route"
    if keys and keys[-1] == "default_service":
        return "default"
    return ""


def _reference_label(kind: str, target_kind: str, path: tuple) -> str:
    if kind in {"google_compute_url_map", "google_compute_region_url_map"}:
        return _route_label(path)
    if KINDS.get(target_kind) == "Cloud Armor policy":
        return "guarded by"
    if kind == "google_cloud_run_v2_service" and target_kind == "google_service_account":
        return "runs as"
    return ""


def _detail(kind: str, resource: dict) -> list[str]:
    """The one or two facts that tell this resource from its neighbours."""
    if kind in ADDRESS_KINDS:
        return [resource.get("ip_version", "IPV4")]
    if KINDS.get(kind) == "forwarding rule":
        return [f"port {resource.get('port_range', '?')}"]
    if KINDS.get(kind) == "URL map" and "default_url_redirect" in resource:
        return ["redirects to HTTPS (308)"]
    if KINDS.get(kind) == "Cloud Armor policy":
        return [f"{len(resource.get('rule', []))} rules"]
    if KINDS.get(kind) == "serverless NEG":
        return [resource.get("region", "")]
    if kind == "google_cloud_run_v2_service":
        env = {
            variable["name"]: variable.get("value", "")
            for container in resource.get("template", {}).get("containers", [])
            for variable in container.get("env", [])
        }
        return [f"MODEL_URI={env['MODEL_URI']}"] if "MODEL_URI" in env else []
    if KINDS.get(kind) == "certificate":
        return list(resource.get("managed", {}).get("domains", []))
    if KINDS.get(kind) == "SSL policy":
        return [f"{resource.get('profile', '')} {resource.get('min_tls_version', '')}".strip()]
    return []


def _named_services(resources: dict, neg: dict) -> list[str]:
    """The Cloud Run services a serverless NEG names (by name and region: not a reference)."""
    return [
        f"google_cloud_run_v2_service.{service['name']}"
        for service in resources.get("google_cloud_run_v2_service", {}).values()
        if service.get("name") == neg["cloud_run"].get("service")
        and service.get("location") in {None, neg.get("region")}
    ]


def graph(stack: dict) -> tuple[dict[str, list[str]], list[Edge]]:
    """The nodes (id -> label lines) and edges of the request path in one synthesized stack."""
    resources = stack.get("resource", {})
    by_address: dict[str, str] = {}
    nodes: dict[str, list[str]] = {}
    for kind, named in resources.items():
        if kind not in KINDS:
            continue
        for key, resource in named.items():
            node = _node_id(kind, resource, key)
            by_address[f"{kind}.{key}"] = node
            details = filter(None, _detail(kind, resource))
            nodes[node] = [KINDS[kind], node.split(".", 1)[1], *details]
    if not any(node.startswith("google_cloud_run_v2_service.") for node in nodes):
        raise DiagramError(
            "expected a synthesized serving stack with a Cloud Run service, found none"
        )

    edges: set[Edge] = set()
    for kind, named in resources.items():
        if kind not in KINDS:
            continue
        for key, resource in named.items():
            node = by_address[f"{kind}.{key}"]
            for path, text in _walk(resource):
                for target_kind, target_key in REFERENCE.findall(text):
                    target = by_address.get(f"{target_kind}.{target_key}")
                    if target is None or target == node:
                        continue
                    if target_kind in ADDRESS_KINDS:  # a request meets the address first
                        edges.add(Edge(target, node))
                    else:
                        edges.add(Edge(node, target, _reference_label(kind, target_kind, path)))
            if kind == "google_compute_region_network_endpoint_group" and "cloud_run" in resource:
                services = _named_services(resources, resource)
                edges.update(Edge(node, service) for service in services)
    for grant in resources.get(BUCKET_GRANT, {}).values():
        bucket = f"bucket.{grant['bucket']}"
        for account_kind, account_key in REFERENCE.findall(grant.get("member", "")):
            account = by_address.get(f"{account_kind}.{account_key}")
            if account is not None:
                nodes[bucket] = ["Cloud Storage bucket", grant["bucket"]]
                edges.add(Edge(account, bucket, grant.get("role", "").removeprefix("roles/")))
    for node in list(nodes):
        if node.split(".", 1)[0] in ADDRESS_KINDS:
            nodes[CLIENT] = ["client", "allowed or not: Cloud Armor decides"]
            edges.add(Edge(CLIENT, node))
    return nodes, sorted(edges, key=lambda edge: (edge.source, edge.target, edge.label))


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'


def to_dot(stack: dict) -> str:
    """Graphviz DOT text, the same bytes for the same JSON."""
    nodes, edges = graph(stack)
    lines = [
        "digraph serving_stack {",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f4f6fa", fontname="Helvetica",'
        " fontsize=11];",
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in sorted(nodes):
        title, *rest = nodes[node]
        label = "\\n".join(_escape(text) for text in [title.upper(), *rest])
        extra = ', fillcolor="#fde8e8"' if title == "Cloud Armor policy" else ""
        lines.append(f'  {_quote(node)} [label="{label}"{extra}];')
    for edge in edges:
        label = f" [label={_quote(edge.label)}]" if edge.label else ""
        lines.append(f"  {_quote(edge.source)} -> {_quote(edge.target)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", type=Path, help="cdktf.out/stacks/secure-inference/cdk.tf.json")
    parser.add_argument("--out", type=Path, required=True, help="the DOT file to write")
    args = parser.parse_args(argv)
    try:
        stack = json.loads(args.stack.read_text())
        text = to_dot(stack)
    except (OSError, ValueError, DiagramError) as error:
        print(f"diagram: {args.stack}: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
