"""The predict request to try for a model file: `make run` prints it before it serves.

Reads the model as the service does (`load_model`: the same metadata, the same checks) and
builds one curl line from its example row, or, for a file without one, from the typed
placeholders the service's own documentation shows (the first category of each categorical
feature, 0.0 for a number). `python -m function.curl_example MODEL_URI [--port N]`.
"""

import argparse
import json
import shlex
import sys

from function.errors import ServiceError
from function.model import load_model
from function.routes import PREDICT_PATHS

PATH = PREDICT_PATHS[-1]  # /predict
# Long enough for a model in Cloud Storage, short enough not to hold up `make run`.
TIMEOUT_SECONDS = 10.0


def curl_line(uri: str, port: int, host: str = "localhost") -> str:
    """`curl -X POST http://host:port/predict … -d '<the model's example row>'`."""
    example = load_model(uri, TIMEOUT_SECONDS).signature.example
    body = json.dumps(dict(example), separators=(", ", ": "))
    return (
        f"curl -X POST http://{host}:{port}{PATH} -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("uri", help="the model: a local path or gs://bucket/object")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    try:
        print(curl_line(args.uri, args.port))
    except ServiceError as error:
        # The service will say the same on its own; until then, GET / says how to call it.
        print(f"curl http://localhost:{args.port}/    (once the model loads: {error})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
