"""One-line JSON logs in Cloud Logging's structured format.

Cloud Run already logs every request, so the service logs only model loads and failures.
"""

import json
import sys
from typing import Any

TRACE_HEADER = "x-cloud-trace-context"
_TRACE_FIELD = "logging.googleapis.com/trace"


def log(
    severity: str,
    message: str,
    *,
    project: str | None = None,
    trace_header: str | None = None,
    **fields: Any,
) -> None:
    entry: dict[str, Any] = {"severity": severity, "message": message, **fields}
    # Header format: TRACE_ID/SPAN_ID;o=OPTIONS. Cloud Logging wants the project in the name.
    trace_id = (trace_header or "").split("/", 1)[0].strip()
    if project and trace_id:
        entry[_TRACE_FIELD] = f"projects/{project}/traces/{trace_id}"
    sys.stdout.write(json.dumps(entry, default=str) + "\n")
    sys.stdout.flush()
