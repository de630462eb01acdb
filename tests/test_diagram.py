"""`make diagram`: the picture of the request path, drawn from the synthesized JSON alone."""

import html
import json
import re
import shutil
import subprocess
import sys

import pytest

from secure_endpoint.diagram import CLIENT, graph, to_dot
from tests.helpers import ROOT

DOCS_DOT = ROOT / "docs" / "diagram.dot"
DOCS_SVG = ROOT / "docs" / "diagram.svg"
# The same settings as test_infra's and test_canary's fixtures, so the session's synths are reused.
HTTPS = {"DOMAIN": "api.example.com", "IPV6": "true"}
CANARY = {"CANARY_MODEL_URI": "gs://demo-models/models/iris/cd827946f6342979/model.onnx", "CANARY_PERCENT": "5"}


def example_settings() -> dict[str, str]:
    """The docs' example settings, as the Makefile gives them to `make diagram` and `make cost`."""
    (line,) = re.findall(r"^EXAMPLE_SETTINGS := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    return dict(word.split("=", 1) for word in line.split())


def kinds(nodes) -> list[str]:
    return sorted(node.split(".", 1)[0] for node in nodes)


def edges_between(edges, source_kind: str, target_kind: str) -> list:
    return [e for e in edges if e.source.startswith(source_kind + ".") and e.target.startswith(target_kind + ".")]


def test_the_committed_picture_is_the_one_the_code_synthesizes(synth):
    settings = example_settings()
    assert settings.keys() == {"PROJECT_ID", "MODEL_URI", "ALLOWED_IP_RANGES"}
    assert "make diagram" in (ROOT / "docs" / "deploy.md").read_text()

    drawn = to_dot(synth(**settings).json)

    assert DOCS_DOT.read_text() == drawn, "run `make diagram` (no settings) and commit docs/diagram.*"


def test_the_committed_svg_shows_every_resource_of_the_dot():
    assert shutil.which("dot"), "`make debian-deps` installs graphviz"
    svg = html.unescape(DOCS_SVG.read_text())  # dot writes `-` as `&#45;`
    names = re.findall(r'^  "[a-z0-9_]+\.([^"]+)" \[label=', DOCS_DOT.read_text(), re.M)

    assert len(names) >= 9
    for name in names:
        assert f">{name}<" in svg, name


def test_the_plain_stack_is_one_path_from_the_client_to_the_model_bucket(synth):
    nodes, edges = graph(synth().json)

    assert kinds(nodes) == sorted([
        "bucket", CLIENT, "google_cloud_run_v2_service", "google_compute_backend_service",
        "google_compute_global_address", "google_compute_global_forwarding_rule",
        "google_compute_region_network_endpoint_group", "google_compute_security_policy",
        "google_compute_target_http_proxy", "google_compute_url_map", "google_service_account",
    ])  # fmt: skip
    # Every resource is reached from the client, following the edges.
    reached, frontier = {CLIENT}, [CLIENT]
    while frontier:
        here = frontier.pop()
        for edge in edges:
            if edge.source == here and edge.target not in reached:
                reached.add(edge.target)
                frontier.append(edge.target)
    assert reached == set(nodes)
    assert [e.label for e in edges_between(edges, "google_compute_backend_service", "google_compute_security_policy")] == ["guarded by"]
    assert [e.label for e in edges_between(edges, "google_service_account", "bucket")] == ["storage.objectViewer"]


def test_https_and_ipv6_appear_when_they_are_on(synth):
    nodes, edges = graph(synth(**HTTPS).json)

    assert kinds(nodes).count("google_compute_global_address") == 2
    assert kinds(nodes).count("google_compute_global_forwarding_rule") == 4
    assert {"google_compute_target_https_proxy", "google_compute_managed_ssl_certificate", "google_compute_ssl_policy"} <= set(kinds(nodes))
    assert any("redirects to HTTPS (308)" in label for label in nodes["google_compute_url_map.inference-http-redirect"])
    assert len(edges_between(edges, "google_compute_target_https_proxy", "google_compute_url_map")) == 1


def test_a_canary_appears_with_its_share_and_its_header(synth):
    nodes, edges = graph(synth(**CANARY).json)

    assert kinds(nodes).count("google_cloud_run_v2_service") == 2
    routes = sorted((e.target.split(".", 1)[1], e.label) for e in edges_between(edges, "google_compute_url_map", "google_compute_backend_service"))
    assert routes == [("inference-backend", "95%"), ("inference-canary-backend", "5%"), ("inference-canary-backend", "X-Model-Canary: 1")]
    assert len(edges_between(edges, "google_compute_backend_service", "google_compute_security_policy")) == 2


def test_the_edges_follow_the_references_not_a_fixed_shape(synth):
    stack = json.loads(json.dumps(synth().json))
    (backend,) = stack["resource"]["google_compute_backend_service"].values()
    del backend["security_policy"]  # a backend without the policy: the picture must show it

    nodes, edges = graph(stack)

    assert "google_compute_security_policy.inference-policy" in nodes
    assert not edges_between(edges, "google_compute_backend_service", "google_compute_security_policy")


def test_the_command_writes_the_dot_and_refuses_what_is_not_a_serving_stack(synth, tmp_path):
    (tmp_path / "cdk.tf.json").write_text(json.dumps(synth().json))
    (tmp_path / "other.json").write_text('{"resource": {"google_storage_bucket": {}}}')
    run = [sys.executable, "-m", "secure_endpoint.diagram"]
    env = {"PYTHONPATH": str(ROOT / "cdktf")}

    written = subprocess.run([*run, str(tmp_path / "cdk.tf.json"), "--out", str(tmp_path / "d.dot")], env=env, capture_output=True, text=True, timeout=60)
    refused = subprocess.run([*run, str(tmp_path / "other.json"), "--out", str(tmp_path / "e.dot")], env=env, capture_output=True, text=True, timeout=60)

    assert written.returncode == 0, written.stderr
    assert (tmp_path / "d.dot").read_text() == to_dot(synth().json)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith("expected a synthesized serving stack with a Cloud Run service, found none")
    rendered = subprocess.run(["dot", "-Tsvg", str(tmp_path / "d.dot")], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    assert ">inference-policy<" in html.unescape(rendered.stdout)


def test_debian_deps_installs_graphviz_for_dot():
    makefile = (ROOT / "Makefile").read_text()

    assert re.search(r"^DEBIAN_PACKAGES :=.* dot\b", makefile, re.M)
    assert "-e 's/^dot$$/graphviz/'" in makefile
