"""Copy the trained model to Cloud Storage: `make upload MODEL_URI=gs://bucket/model.onnx`.

`--check` checks MODEL_URI only, before `make upload` trains a missing model.
"""

import argparse
import os
import re
import sys
from pathlib import Path

from function.settings import DEFAULT_MODEL_URI
from function.storage import parse_gcs_uri, upload_file

# Cloud Storage's naming rules: lowercase letters, digits, -, _ and ., starting and ending with a
# letter or digit; 3 to 63 characters, or up to 222 in dot-separated parts of at most 63.
_BUCKET_PART = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$")


def check_uri(uri: str) -> None:
    """Raises ValueError saying what is wrong with `uri` as the upload's destination."""
    bucket, _ = parse_gcs_uri(uri)
    if bucket != bucket.lower():
        raise ValueError(
            f"bucket names are lowercase, got {bucket!r} in {uri!r}: a placeholder? "
            "`make bootstrap` prints the model bucket's name"
        )
    parts = bucket.split(".")
    longest = 222 if len(parts) > 1 else 63
    if not 3 <= len(bucket) <= longest or not all(map(_BUCKET_PART.match, parts)):
        raise ValueError(
            f"expected a bucket name of 3 to 63 lowercase letters, digits, -, _ or ., "
            f"got {bucket!r} in {uri!r}"
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
