"""The service's paths, and a router that matches them: exact paths in one lookup, then path
templates whose `{name}` and `{version}` stand for one segment each."""

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

PREDICT_PATHS = ("/", "/inference", "/inference/", "/predict")
METADATA_PATH = "/"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
OPENAPI_PATH = "/openapi.json"
DOCS_PATH = "/docs"

Endpoint = Callable[[Request], Awaitable[Response]]
_PARAMETER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Route:
    """One method on one path. `operation(signature, settings)` gives its OpenAPI description
    (`function.openapi.Operation`), or is None for a route the document leaves out. `takes`:
    for a prediction route of a dialect other than the service's own, what it takes, in words
    ("Open Inference Protocol V2 tensors"): a body in that dialect sent to the seed routes is
    pointed there."""

    path: str
    method: str
    endpoint: Endpoint
    operation: Callable[..., Any] | None = None
    takes: str | None = None

    @property
    def parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)


class Router:
    """Routes by path, then method; GET routes answer HEAD too."""

    def __init__(self, routes: Iterable[Route]):
        self.routes = tuple(routes)
        self._exact: dict[str, dict[str, Route]] = {}
        templates: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            table = templates if route.parameters else self._exact
            methods = table.setdefault(route.path, {})
            methods[route.method] = route
            if route.method == "GET":
                methods.setdefault("HEAD", route)
        self._templates = [(_pattern(path), methods) for path, methods in templates.items()]
        self.paths = sorted({route.path for route in self.routes})

    def match(self, path: str) -> tuple[Mapping[str, Route], dict[str, str] | None] | None:
        """(the routes of `path` by method, its path parameters or None), or None."""
        methods = self._exact.get(path)
        if methods is not None:
            return methods, None
        for pattern, methods in self._templates:
            found = pattern.fullmatch(path)
            if found:
                return methods, found.groupdict()
        return None


def _pattern(template: str) -> re.Pattern:
    # split() alternates literal text and parameter names.
    parts = _PARAMETER.split(template)
    return re.compile(
        "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)
        )
    )
