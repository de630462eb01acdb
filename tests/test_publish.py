"""`make publish`: a model version goes to the model bucket once and never changes.

The happy path runs against a real gcp-storage-emulator. The emulator ignores `ifGenerationMatch`
(a second upload overwrites), so the precondition is tested with the real google-cloud-storage
client against a local server that answers the Cloud Storage JSON API's calls.
"""

import base64
import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import google_crc32c
import onnx
import pytest

from function.model import VERSION_KEY
from tests.helpers import ROOT, free_port
from training.publish import (
    EXIT_FAILED,
    EXIT_PUBLISHED,
    EXIT_REFUSED,
    NAME_KEY,
    Checksums,
    bucket_name_problem,
    main,
)

NAME = "iris"
BUCKET = "models-publish-test"
# google-cloud-storage sends files above 8 MiB as a resumable upload, smaller ones as multipart.
ABOVE_MULTIPART_LIMIT = 9 << 20


def model_with(source: Path, out: Path, **props: str | None) -> Path:
    """`source` with its ONNX metadata changed: a value sets the key, None removes it."""
    proto = onnx.load_model(source)
    merged = {prop.key: prop.value for prop in proto.metadata_props} | props
    onnx.helper.set_model_props(proto, {k: v for k, v in merged.items() if v is not None})
    onnx.save_model(proto, out)
    return out


def version_of(path: Path) -> str:
    return {prop.key: prop.value for prop in onnx.load_model(path).metadata_props}[VERSION_KEY]


def uri_of(bucket: str, path: Path) -> str:
    return f"gs://{bucket}/models/{NAME}/{version_of(path)}/model.onnx"


def object_of(uri: str) -> str:
    return uri.split("/", 3)[3]


@pytest.fixture(autouse=True)
def _no_model_bucket(monkeypatch):
    monkeypatch.delenv("MODEL_BUCKET", raising=False)


@pytest.fixture
def named_model(model_file, tmp_path) -> Path:
    return model_with(model_file, tmp_path / "named.onnx", **{NAME_KEY: NAME})


@pytest.fixture
def impostor(named_model, tmp_path) -> Path:
    """Other bytes that claim the named model's name and version."""
    return model_with(named_model, tmp_path / "impostor.onnx", scores='{"train": 1.0}')


@pytest.fixture
def large_model(named_model, tmp_path) -> Path:
    path = model_with(named_model, tmp_path / "large.onnx", padding="x" * ABOVE_MULTIPART_LIMIT)
    assert path.stat().st_size > ABOVE_MULTIPART_LIMIT
    return path


def publish(capsys, *args: str) -> tuple[int, str, str]:
    status = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# Against the real emulator.


def test_publishes_under_name_and_version_and_prints_the_uri_last(
    capsys, monkeypatch, gcs_bucket, named_model, make_client
):
    monkeypatch.setenv("MODEL_BUCKET", gcs_bucket.name)

    status, out, err = publish(capsys, named_model)

    uri = uri_of(gcs_bucket.name, named_model)
    assert status == EXIT_PUBLISHED
    assert out == f"{uri}\n"
    assert f"published {named_model} as {NAME} version {version_of(named_model)}" in one_line(err)
    stored = gcs_bucket.blob(object_of(uri))
    assert stored.download_as_bytes() == named_model.read_bytes()
    # What was published is what the service then serves.
    assert make_client(MODEL_URI=uri).get("/").json()["version"] == version_of(named_model)


def test_publishing_the_same_file_again_succeeds_and_changes_nothing(
    capsys, monkeypatch, gcs_bucket, named_model
):
    monkeypatch.setenv("MODEL_BUCKET", gcs_bucket.name)
    assert publish(capsys, named_model)[0] == EXIT_PUBLISHED
    uri = uri_of(gcs_bucket.name, named_model)
    generation = gcs_bucket.get_blob(object_of(uri)).generation

    status, out, err = publish(capsys, named_model)

    assert status == EXIT_PUBLISHED
    assert out == f"{uri}\n"
    assert "already published with the same bytes" in one_line(err)
    assert gcs_bucket.get_blob(object_of(uri)).generation == generation


def test_a_large_model_is_published_through_a_resumable_upload(
    capsys, monkeypatch, gcs_bucket, large_model
):
    monkeypatch.setenv("MODEL_BUCKET", gcs_bucket.name)

    status, out, _ = publish(capsys, large_model)

    assert status == EXIT_PUBLISHED
    uri = uri_of(gcs_bucket.name, large_model)
    assert out == f"{uri}\n"
    assert gcs_bucket.blob(object_of(uri)).download_as_bytes() == large_model.read_bytes()


def test_other_bytes_claiming_a_published_version_are_refused_and_the_version_kept(
    capsys, monkeypatch, gcs_bucket, named_model, impostor
):
    monkeypatch.setenv("MODEL_BUCKET", gcs_bucket.name)
    assert publish(capsys, named_model)[0] == EXIT_PUBLISHED
    uri = uri_of(gcs_bucket.name, named_model)
    assert uri_of(gcs_bucket.name, impostor) == uri

    status, out, err = publish(capsys, impostor)

    assert status == EXIT_REFUSED
    assert out == ""
    line = one_line(err)
    assert line.startswith(f"error: {uri} already holds other bytes")
    assert "a published version never changes" in line
    assert gcs_bucket.blob(object_of(uri)).download_as_bytes() == named_model.read_bytes()


def test_the_module_command_exits_with_the_documented_statuses(
    tmp_path, gcs_bucket, gcs_emulator, named_model, impostor
):
    env = {
        "MODEL_BUCKET": gcs_bucket.name,
        "STORAGE_EMULATOR_HOST": gcs_emulator,
        "PATH": "/usr/bin:/bin",
    }

    def run(model: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "training.publish", str(model)]
        return subprocess.run(
            command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    first, again, impostor_run = run(named_model), run(named_model), run(impostor)
    missing = run(tmp_path / "missing.onnx")

    uri = uri_of(gcs_bucket.name, named_model)
    assert (first.returncode, first.stdout.splitlines()[-1]) == (EXIT_PUBLISHED, uri), first.stderr
    assert (again.returncode, again.stdout) == (EXIT_PUBLISHED, f"{uri}\n"), again.stderr
    assert (impostor_run.returncode, impostor_run.stdout) == (EXIT_REFUSED, "")
    assert (missing.returncode, missing.stdout) == (EXIT_FAILED, "")
    assert (
        one_line(missing.stderr)
        == f"error: model file {tmp_path / 'missing.onnx'}: expected an ONNX file, got no such file"
    )


def test_a_bucket_that_does_not_exist_is_one_line(capsys, monkeypatch, gcs_emulator, named_model):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("MODEL_BUCKET", "no-such-models-bucket")

    status, out, err = publish(capsys, named_model)

    assert (status, out) == (EXIT_FAILED, "")
    assert "bucket no-such-models-bucket does not exist (`make bootstrap` creates" in one_line(err)


def test_unreachable_storage_is_one_line(capsys, monkeypatch, named_model):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)

    status, out, err = publish(capsys, named_model, "--timeout", "1")

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err).startswith(f"error: cannot publish {uri_of(BUCKET, named_model)}: ")


# The precondition, against a local server speaking the Cloud Storage JSON API.


def object_path(path: Path) -> str:
    # The client percent-encodes the object name; the server sees it decoded.
    return f"/storage/v1/b/{BUCKET}/o/{object_of(uri_of(BUCKET, path))}"


def object_json(path: Path, content: bytes) -> dict:
    return {
        "kind": "storage#object",
        "bucket": BUCKET,
        "name": object_of(uri_of(BUCKET, path)),
        "generation": "1764000000000000",
        "metageneration": "1",
        "size": str(len(content)),
        "crc32c": base64.b64encode(google_crc32c.Checksum(content).digest()).decode(),
        "md5Hash": base64.b64encode(hashlib.md5(content).digest()).decode(),
    }


def api_error(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message, "errors": [{"message": message}]}}


@pytest.fixture
def storage_api(httpserver, monkeypatch):
    """Points the real client at `httpserver`; `storage_api(model, stored=bytes)` sets its answers.

    The object is missing when the client first looks, then the upload meets a 412 (someone
    published in between), and a second look finds `stored`.
    """
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", httpserver.url_for("").rstrip("/"))
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)

    def serve(model: Path, *, stored: bytes) -> None:
        httpserver.expect_oneshot_request(object_path(model), method="GET").respond_with_json(
            api_error(404, "No such object"), status=404
        )
        httpserver.expect_request(
            f"/upload/storage/v1/b/{BUCKET}/o", method="POST"
        ).respond_with_json(
            api_error(412, "At least one of the pre-conditions you specified did not hold."),
            status=412,
        )
        httpserver.expect_request(object_path(model), method="GET").respond_with_json(
            object_json(model, stored)
        )

    return serve


def uploads(httpserver) -> list:
    return [request for request, _ in httpserver.log if request.path.startswith("/upload/")]


@pytest.mark.parametrize(
    ("model_fixture", "upload_type"), [("named_model", "multipart"), ("large_model", "resumable")]
)
@pytest.mark.parametrize(
    ("same", "expected_status"),
    [(True, EXIT_PUBLISHED), (False, EXIT_REFUSED)],
    ids=["same-bytes", "other-bytes"],
)
def test_a_failed_precondition_compares_the_stored_checksums(
    request, capsys, httpserver, storage_api, model_fixture, upload_type, same, expected_status
):
    model = request.getfixturevalue(model_fixture)
    storage_api(model, stored=model.read_bytes() if same else b"other bytes")

    status, out, err = publish(capsys, model)

    sent = uploads(httpserver)
    assert [
        (r.method, r.args.get("uploadType"), r.args.get("ifGenerationMatch")) for r in sent
    ] == [("POST", upload_type, "0")]
    assert status == expected_status
    line = one_line(err)
    uri = uri_of(BUCKET, model)
    if same:
        assert out == f"{uri}\n"
        assert "already published with the same bytes" in line
    else:
        assert out == ""
        assert line.startswith(f"error: {uri} already holds other bytes (11 bytes, crc32c ")


def test_an_identical_version_already_there_is_not_uploaded_again(
    capsys, httpserver, storage_api, large_model
):
    httpserver.expect_request(object_path(large_model), method="GET").respond_with_json(
        object_json(large_model, large_model.read_bytes())
    )

    status, out, _ = publish(capsys, large_model)

    assert (status, out) == (EXIT_PUBLISHED, f"{uri_of(BUCKET, large_model)}\n")
    assert uploads(httpserver) == []


def test_permission_denied_names_the_roles(capsys, httpserver, storage_api, named_model):
    httpserver.expect_request(object_path(named_model), method="GET").respond_with_json(
        api_error(403, "caller does not have storage.objects.get access"), status=403
    )

    status, out, err = publish(capsys, named_model)

    assert (status, out) == (EXIT_FAILED, "")
    assert (
        "permission denied on bucket models-publish-test; publishing needs roles/storage.objectCreator"
        in one_line(err)
    )
    assert uploads(httpserver) == []


def test_a_version_gone_after_the_failed_precondition_asks_to_publish_again(
    capsys, httpserver, storage_api, named_model
):
    # Deleted between the 412 and the second look: every look finds nothing.
    httpserver.expect_request(object_path(named_model), method="GET").respond_with_json(
        api_error(404, "No such object"), status=404
    )
    httpserver.expect_request(f"/upload/storage/v1/b/{BUCKET}/o", method="POST").respond_with_json(
        api_error(412, "At least one of the pre-conditions you specified did not hold."), status=412
    )

    status, out, err = publish(capsys, named_model)

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err).endswith("changed while publishing; publish again")


def test_no_credentials_is_one_line_saying_how_to_log_in(
    capsys, monkeypatch, tmp_path, named_model
):
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # an empty gcloud configuration
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # and not on a Google Cloud VM

    status, out, err = publish(capsys, named_model)

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err).endswith(
        "no Google credentials; run `gcloud auth application-default login`"
    )


# Bad input and settings: one line, exit 2, nothing sent.


def test_a_missing_model_bucket_is_named(capsys, named_model):
    status, out, err = publish(capsys, named_model)

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err).startswith(
        "error: MODEL_BUCKET: required, the model bucket `make bootstrap` created"
    )


@pytest.mark.parametrize(
    ("bucket", "problem"),
    [
        ("YOUR_BUCKET", "placeholder"),
        ("your-model-bucket", "placeholder"),
        ("<bucket>", "placeholder"),
        ("$MODEL_BUCKET", "placeholder"),
        ("gs://models", "without gs://"),
        ("ab", "3 to 222 characters"),
        ("Models", "lowercase"),
        ("models/iris", "lowercase letters, digits"),
        ("-models", "starting and ending with a letter or a digit"),
        ("m" * 64, "at most 63 characters"),
        ("a..b", "no empty part"),
        ("192.0.2.1", "IP address"),
        ("goog-models", "Cloud Storage refuses bucket names that begin with 'goog'"),
        ("my-google-models", "Cloud Storage refuses bucket names that contain 'google' or a close misspelling"),
        ("my-g00gle-models", "(this one contains 'g00gle')"),
        ("my-goog1e-models", "(this one contains 'goog1e')"),
    ],
)
def test_a_bad_bucket_name_is_refused_naming_it(capsys, monkeypatch, named_model, bucket, problem):
    monkeypatch.setenv("MODEL_BUCKET", bucket)

    status, out, err = publish(capsys, named_model)

    assert (status, out) == (EXIT_FAILED, "")
    line = one_line(err)
    assert line.startswith(
        f"error: MODEL_BUCKET: expected a Cloud Storage bucket name, got {bucket!r}: "
    )
    assert problem in line


@pytest.mark.parametrize(
    "bucket", ["models-123", "my.models.example.com", "a_b", "m" * 63, f"{'m' * 63}.{'n' * 63}"]
)
def test_real_bucket_names_pass(bucket):
    assert bucket_name_problem(bucket) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "not an ONNX model (The model does not have an ir_version set properly.)"),
        (b"hello, not a model\n", "not an ONNX model (Error parsing message"),
        (b"\x08\x07" + bytes(range(256)) * 8, "not an ONNX model ("),
    ],
    ids=["empty", "text", "bytes"],
)
def test_a_file_that_is_not_an_onnx_model_is_one_line(
    capsys, monkeypatch, tmp_path, content, expected
):
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    path = tmp_path / "model.onnx"
    path.write_bytes(content)

    status, out, err = publish(capsys, path)

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err).startswith(f"error: model file {path}: {expected}")


def test_a_directory_is_not_a_model(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)

    status, _, err = publish(capsys, tmp_path)

    assert status == EXIT_FAILED
    assert one_line(err) == f"error: model file {tmp_path}: expected an ONNX file, got a directory"


def test_a_model_without_a_name_is_refused_with_how_to_name_it(
    capsys, monkeypatch, tmp_path, model_file
):
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    unnamed = model_with(model_file, tmp_path / "unnamed.onnx", **{NAME_KEY: None})

    status, out, err = publish(capsys, unnamed)

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err) == (
        f"error: model file {unnamed}: no model_name in its metadata, which names the published path; "
        "re-export it with `make train` or `make export ... NAME=<name>`"
    )


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({NAME_KEY: "Iris"}, "model_name must match [a-z0-9][a-z0-9._-]{0,62}, got 'Iris'"),
        ({NAME_KEY: "../iris"}, "model_name must match"),
        ({NAME_KEY: "iris/2"}, "model_name must match"),
        ({NAME_KEY: "i" * 64}, "model_name must match"),
        (
            {NAME_KEY: NAME, VERSION_KEY: None},
            "model_version must be 16 lowercase hex characters, got nothing",
        ),
        (
            {NAME_KEY: NAME, VERSION_KEY: "v1"},
            "model_version must be 16 lowercase hex characters, got 'v1'",
        ),
        (
            {NAME_KEY: NAME, VERSION_KEY: "CD827946F6342979"},
            "model_version must be 16 lowercase hex characters, got 'CD8",
        ),
    ],
)
def test_a_bad_name_or_version_in_the_file_is_refused(
    capsys, monkeypatch, tmp_path, model_file, props, expected
):
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)
    path = model_with(model_file, tmp_path / f"{uuid.uuid4().hex}.onnx", **props)

    status, out, err = publish(capsys, path)

    assert (status, out) == (EXIT_FAILED, "")
    assert one_line(err).startswith(f"error: model file {path}: {expected}")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_timeout_is_refused(capsys, monkeypatch, named_model, timeout):
    monkeypatch.setenv("MODEL_BUCKET", BUCKET)

    with pytest.raises(SystemExit) as exit_info:
        main([str(named_model), "--timeout", timeout])

    assert exit_info.value.code == EXIT_FAILED
    assert f"expected a positive number of seconds, got {timeout!r}" in capsys.readouterr().err


def test_checksums_decide_by_size_crc32c_and_md5_when_stored(named_model):
    local = Checksums.of_file(named_model)
    data = named_model.read_bytes()
    assert (local.size, local.md5) == (
        len(data),
        base64.b64encode(hashlib.md5(data).digest()).decode(),
    )

    assert local.same_content(local)
    # Composite objects have no MD5: size and CRC32C still decide.
    assert local.same_content(Checksums(size=local.size, crc32c=local.crc32c, md5=None))
    assert not local.same_content(
        Checksums(size=local.size, crc32c=local.crc32c, md5="AAAAAAAAAAAAAAAAAAAAAA==")
    )
    assert not local.same_content(
        Checksums(size=local.size + 1, crc32c=local.crc32c, md5=local.md5)
    )
    assert not local.same_content(Checksums(size=local.size, crc32c="AAAAAA==", md5=local.md5))
