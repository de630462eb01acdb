"""Copy the trained model to Cloud Storage: `make upload MODEL_URI=gs://bucket/model.onnx`."""

import argparse
import os
import sys
from pathlib import Path

from function.settings import DEFAULT_MODEL_URI
from function.storage import parse_gcs_uri, upload_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=Path(DEFAULT_MODEL_URI))
    parser.add_argument("--to", default=os.environ.get("MODEL_URI", ""), help="default: $MODEL_URI")
    args = parser.parse_args(argv)

    try:
        parse_gcs_uri(args.to)
    except ValueError as error:
        print(f"error: MODEL_URI: {error}", file=sys.stderr)
        return 2
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
