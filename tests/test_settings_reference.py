"""The settings reference (docs/settings.md) is generated from the settings' own declarations."""

import subprocess
import sys
from collections.abc import Mapping

import pytest

from function.settings import REFERENCE, Settings
from secure_endpoint.bootstrap_settings import BOOTSTRAP_SETTINGS, BootstrapSettings
from secure_endpoint.reference import settings_reference
from secure_endpoint.settings import SETTINGS, EndpointSettings
from tests.helpers import ROOT
from tests.infra import BASE_ENV

PAGE = ROOT / "docs" / "settings.md"
REGENERATE = "python cdktf/main.py --settings-reference > docs/settings.md"


class Recording(dict):
    """An environment that remembers every variable asked for."""

    def __init__(self, values: Mapping[str, str]):
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, name, default=None):
        self.asked.add(name)
        return super().get(name, default)

    def __getitem__(self, name):
        self.asked.add(name)
        return super().__getitem__(name)


def test_the_committed_page_is_the_generated_one():
    assert PAGE.read_text() == settings_reference(), f"docs/settings.md is out of date: run `{REGENERATE}`"


def test_the_generator_runs_as_the_page_says():
    result = subprocess.run(
        [sys.executable, "cdktf/main.py", "--settings-reference"], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == PAGE.read_text()
    assert REGENERATE in result.stdout


@pytest.mark.parametrize(
    "read, declared, env",
    [
        (EndpointSettings.from_env, {s.name for s in SETTINGS}, BASE_ENV),
        (BootstrapSettings.from_env, {s.name for s in BOOTSTRAP_SETTINGS}, {"PROJECT_ID": "p"}),
        (Settings.from_env, {name for name, _, _ in REFERENCE}, {}),
    ],
    ids=["endpoint", "bootstrap", "service"],
)  # fmt: skip
def test_every_variable_read_is_declared_and_listed(read, declared, env):
    environ = Recording(env)
    try:
        read(environ)
    except ValueError:
        pass  # a missing required setting still reads all the others

    assert environ.asked == declared
    page = PAGE.read_text()
    assert all(f"| `{name}` |" in page for name in declared)


def test_the_page_gives_each_setting_its_meaning_and_default():
    page = PAGE.read_text()

    for setting in SETTINGS:
        assert f"| `{setting.name}` | {setting.meaning} | {setting.default_text} |" in page
    assert "| `MODEL_URI` | `gs://bucket/object` or a local path to the ONNX model | `artifacts/model.onnx` |" in page
    assert "| `PROJECT_ID` | Google Cloud project | required |" in page
