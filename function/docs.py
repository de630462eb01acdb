"""The interactive page at /docs: Swagger UI from the pinned `swagger-ui-bundle-v2` package,
served by the service itself. The endpoint is locked down and its users may be offline, so the
page loads nothing from elsewhere (its Content-Security-Policy says so to the browser too)."""

import functools

from function.routes import DOCS_PATH, OPENAPI_PATH

# The package's files the page needs, by the name the page asks for them.
ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
INIT_ASSET = "init.js"
ASSET_PATHS = {f"{DOCS_PATH}/{name}": name for name in (*ASSETS, INIT_ASSET)}
HTML_MEDIA_TYPE = "text/html; charset=utf-8"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# The files change only with the pinned package, so browsers may keep them for a day.
ASSET_CACHE_CONTROL = "public, max-age=86400"

# Relative URLs: the page works under whatever host the load balancer answers on.
_HERE = DOCS_PATH.lstrip("/")
PAGE = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Model API</title>
    <link rel="stylesheet" type="text/css" href="{_HERE}/swagger-ui.css">
    <link rel="icon" type="image/png" href="{_HERE}/favicon-32x32.png" sizes="32x32">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="{_HERE}/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="{_HERE}/{INIT_ASSET}" charset="UTF-8"></script>
  </body>
</html>
""".encode()

INIT_SCRIPT = f"""window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{OPENAPI_PATH.lstrip("/")}",
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    docExpansion: "full",
    defaultModelsExpandDepth: 2,
    tryItOutEnabled: true,
  }});
}};
""".encode()


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    """(content, media type) of one of the page's files, read from the package once."""
    if name == INIT_ASSET:
        return INIT_SCRIPT, "text/javascript; charset=utf-8"
    from swagger_ui_bundle import swagger_ui_path

    return (swagger_ui_path / name).read_bytes(), ASSETS[name]
