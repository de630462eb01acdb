"""Settings come from the environment once; a bad one stops start-up naming the variable and value."""

import subprocess

import pytest

from function.errors import ConfigError
from function.settings import (
    DEFAULT_BODY_READ_TIMEOUT,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MODEL_MAX_BYTES,
    DEFAULT_MODEL_URI,
    MAX_BODY_BYTES,
    Settings,
)
from tests.helpers import FUNCTIONS_FRAMEWORK, ROOT, free_port


def test_defaults():
    settings = Settings.from_env({})

    assert settings.model_uri == DEFAULT_MODEL_URI
    assert settings.max_batch_rows == DEFAULT_MAX_BATCH_ROWS
    assert settings.model_max_bytes == DEFAULT_MODEL_MAX_BYTES == 256 * 1024 * 1024
    assert settings.project is None
    assert settings.prediction_log_rate == 0
    assert settings.max_body_bytes == MAX_BODY_BYTES == 1024 * 1024
    assert settings.body_read_timeout == DEFAULT_BODY_READ_TIMEOUT


def test_values_are_read():
    settings = Settings.from_env(
        {"MODEL_URI": "gs://bucket/dir/model.onnx", "MAX_BATCH_ROWS": "10", "MODEL_LOAD_TIMEOUT": "2.5",
         "MODEL_MAX_BYTES": "5000000", "GOOGLE_CLOUD_PROJECT": "p", "PREDICTION_LOG_RATE": "0.25"}
    )  # fmt: skip

    assert (settings.model_uri, settings.max_batch_rows, settings.model_load_timeout, settings.model_max_bytes, settings.project, settings.prediction_log_rate) == (
        "gs://bucket/dir/model.onnx", 10, 2.5, 5_000_000, "p", 0.25,
    )  # fmt: skip


def test_body_limits_are_read():
    settings = Settings.from_env({"MAX_BODY_BYTES": "65536", "BODY_READ_TIMEOUT": "2.5"})

    assert (settings.max_body_bytes, settings.body_read_timeout) == (65536, 2.5)


@pytest.mark.parametrize(
    "name, value",
    [
        ("MODEL_URI", "gs://bucket"),
        ("MODEL_URI", "gs://bucket/"),
        ("MODEL_URI", "gs:///model.onnx"),
        ("MODEL_URI", "gs://bucket/dir/"),
        ("MAX_BATCH_ROWS", "0"),
        ("MAX_BATCH_ROWS", "-3"),
        ("MAX_BATCH_ROWS", "ten"),
        ("MAX_BATCH_ROWS", "1.5"),
        ("MODEL_LOAD_TIMEOUT", "0"),
        ("MODEL_LOAD_TIMEOUT", "nan"),
        ("MODEL_LOAD_TIMEOUT", "inf"),
        ("MODEL_LOAD_TIMEOUT", "soon"),
        ("MODEL_MAX_BYTES", "0"),
        ("MODEL_MAX_BYTES", "256MiB"),
        ("MODEL_MAX_BYTES", "1e6"),
        ("MODEL_MAX_BYTES", "-1"),
        ("MAX_BODY_BYTES", "0"),
        ("MAX_BODY_BYTES", "1MiB"),
        ("MAX_BODY_BYTES", "1e6"),
        ("MAX_BODY_BYTES", str(32 * 1024 * 1024 + 1)),
        ("BODY_READ_TIMEOUT", "0"),
        ("BODY_READ_TIMEOUT", "-1"),
        ("BODY_READ_TIMEOUT", "inf"),
        ("BODY_READ_TIMEOUT", "a while"),
        ("PREDICTION_LOG_RATE", "-0.1"),
        ("PREDICTION_LOG_RATE", "1.5"),
        ("PREDICTION_LOG_RATE", "10%"),
        ("PREDICTION_LOG_RATE", "nan"),
        ("PREDICTION_LOG_RATE", "inf"),
        ("PREDICTION_LOG_RATE", "often"),
    ],
)
def test_bad_setting_names_the_variable_and_the_value(name, value):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})

    assert str(raised.value).startswith(f"{name}: expected")
    assert repr(value) in str(raised.value)


@pytest.mark.parametrize(
    "setting, message",
    [
        (("MODEL_URI", "gs://only-a-bucket"), "MODEL_URI: expected gs://bucket/object, got 'gs://only-a-bucket'"),
        (("PREDICTION_LOG_RATE", "5%"), "PREDICTION_LOG_RATE: expected a fraction from 0 to 1, such as 0.01, got '5%'"),
    ],
)  # fmt: skip
def test_functions_framework_refuses_to_start_on_a_bad_setting(setting, message):
    env = {"PATH": "/usr/bin:/bin", setting[0]: setting[1], "PORT": str(free_port())}

    result = subprocess.run(
        [FUNCTIONS_FRAMEWORK, "--target=predict", "--host=127.0.0.1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.returncode != 0
    assert message in result.stderr
