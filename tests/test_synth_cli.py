"""The path a user takes: the pinned cdktn-cli running cdktf.json's app, and a scanner nobody here wrote."""

import json
import os
import re
import subprocess

import pytest

from tests.helpers import ROOT
from tests.infra import BASE_ENV

CDKTN = ROOT / "node_modules" / ".bin" / "cdktn"
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
STACK = "secure-inference"


def cdktn(*args: str, env: dict[str, str], tmp_path, cwd=ROOT) -> subprocess.CompletedProcess:
    assert CDKTN.exists(), "`make test` installs cdktn-cli from package-lock.json"
    full_env = {
        **os.environ,
        "PATH": f"{CDKTN.parent}{os.pathsep}{os.environ['PATH']}",
        "CHECKPOINT_DISABLE": "1",
        "HOME": str(tmp_path),  # cdktn-cli keeps its config in ~/.cdktf
        **env,
    }
    return subprocess.run(
        [str(CDKTN), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def cli_output(tmp_path_factory):
    out = tmp_path_factory.mktemp("cdktf-out")
    result = cdktn("synth", "--output", str(out), env=BASE_ENV, tmp_path=out.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_cdktn_synth_writes_the_stack(cli_output, synth):
    out, _ = cli_output

    written = json.loads((out / "stacks" / STACK / "cdk.tf.json").read_text())

    assert written["resource"].keys() == synth().json["resource"].keys()


def test_cdktn_synth_shows_no_node_version_warning(cli_output):
    _, result = cli_output

    assert "end-of-life" not in (result.stdout + result.stderr).lower()
    assert "node.js" not in result.stderr.lower()


def test_cdktn_synth_refuses_the_seed_placeholder(tmp_path):
    result = cdktn(
        "synth", "--output", str(tmp_path / "out"),
        env={**BASE_ENV, "ALLOWED_IP_RANGES": "your ip address"}, tmp_path=tmp_path,
    )  # fmt: skip

    assert result.returncode != 0
    assert "ALLOWED_IP_RANGES: expected your own addresses, got the placeholder 'your ip address'" in result.stdout + result.stderr
    assert not (tmp_path / "out" / "stacks").exists()


def test_checkov_finds_no_failed_check_in_the_hcl(tmp_path):
    assert CHECKOV.exists(), "`make test` installs checkov into .venv-checkov"
    out = tmp_path / "hcl"
    synthesized = cdktn("synth", "--hcl", "--output", str(out), env=BASE_ENV, tmp_path=tmp_path)
    assert synthesized.returncode == 0, synthesized.stdout + synthesized.stderr

    scan = subprocess.run(
        [str(CHECKOV), "-d", str(out / "stacks" / STACK), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip

    summary = json.loads(scan.stdout)["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 10
    assert summary["failed"] == 0, scan.stdout
    assert summary["passed"] > 0


def warnings_in(result: subprocess.CompletedProcess) -> list[str]:
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", result.stdout + result.stderr)
    return [line for line in text.splitlines() if line.startswith("WARN [")]


def test_warnings_are_printed_once_each_as_warnings_not_errors(cli_output):
    _, result = cli_output
    warnings = warnings_in(result)

    # BASE_ENV leaves DOMAIN unset and IMAGE at its `:latest` default: one warning for each.
    assert [w.split(": ", 1)[1].split(" ", 1)[0] for w in warnings] == ["DOMAIN", "IMAGE"]
    assert all(w.startswith(f"WARN [{STACK}]: ") for w in warnings)
    http, tag = warnings
    assert "plain HTTP" in http and "in clear" in http and "Set DOMAIN=" in http and "HTTPS" in http
    assert "is given by tag, not by digest" in tag and "@sha256:" in tag
    # cdktf-cli labels whatever the app writes on stderr `[ERROR]`.
    errors = [line for line in (result.stdout + result.stderr).splitlines() if "[ERROR]" in line]
    assert not [line for line in errors if "DOMAIN" in line or "IMAGE" in line], errors


def test_a_pinned_image_behind_https_warns_of_nothing():
    from secure_endpoint.settings import EndpointSettings

    pinned = f"asia-northeast1-docker.pkg.dev/p/r/inference@sha256:{'ab' * 32}"
    settings = EndpointSettings.from_env({**BASE_ENV, "DOMAIN": "api.example.com", "IMAGE": pinned})

    assert settings.warnings() == []
    assert [w.split(" ", 1)[0] for w in EndpointSettings.from_env(BASE_ENV).warnings()] == ["DOMAIN", "IMAGE"]


def test_cdktn_refuses_a_binary_outside_cdktf_jsons_target_versions_before_running_it(tmp_path):
    config = json.loads((ROOT / "cdktf.json").read_text())
    # Without the opt-in, cdktn would go on to `terraform init`, which reaches the registry.
    assert config["validateInstalledBinary"] is True
    assert set(config["targetVersions"]) == {"terraform", "opentofu"}
    project = tmp_path / "project"
    project.mkdir()
    for name in (".venv", "cdktf", "node_modules"):
        (project / name).symlink_to(ROOT / name)
    (project / "cdktf.json").write_text(json.dumps({**config, "targetVersions": {**config["targetVersions"], "terraform": ">=99.0.0"}}))

    result = cdktn("diff", STACK, env={**BASE_ENV, "STACK": STACK}, tmp_path=tmp_path, cwd=project)

    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "outside the project's declared targetVersions.terraform range \">=99.0.0\"" in output, output
    assert not (project / "cdktf.out" / "stacks" / STACK / ".terraform").exists()
