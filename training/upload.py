"""Copy the trained model to Cloud Storage: `make upload MODEL_URI=gs://bucket/model.onnx`.

`--check` checks MODEL_URI only, before `make upload` trains a missing model.
"""

import argparse
import os
import sys
from pathlib import Path

from function.settings import DEFAULT_MODEL_URI
from function.storage import parse_gcs_uri, upload_file
from training.buckets import bucket_name_problem, object_name_problem


def check_uri(uri: str) -> None:
    """Raises ValueError saying what is wrong with `uri` as the upload's destination."""
    bucket, name = parse_gcs_uri(uri)
    problem = bucket_name_problem(bucket)
    if problem is None and object_name_problem(name):
        problem = f"expected {object_name_problem(name)}"
    if problem:
        raise ValueError(
            f"expected gs://bucket/object in a bucket of yours (`make bootstrap` prints the model "
            f"bucket's name), got {uri!r}: {problem}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=Path(DEFAULT_MODEL_URI))
    parser.add_argument("--to", default=os.environ.get("MODEL_URI", ""), help="default: $MODEL_URI")
    parser.add_argument("--check", action="store_true", help="check the destination only")
    args = parser.parse_args(argv)

    try:
        check_uri(args.to)
    except ValueError as error:
        print(f"error: MODEL_URI: {error}", file=sys.stderr)
        return 2
    if args.check:
        return 0
    if not args.source.is_file():
        print(f"error: {args.source} does not exist; run `make train` first", file=sys.stderr)
        return 2
    try:
        upload_file(args.source, args.to)
    except Exception as error:  # credentials, permissions, network: one sentence, no traceback
        print(f"error: cannot upload to {args.to}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"uploaded {args.source} ({args.source.stat().st_size} bytes) to {args.to}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
