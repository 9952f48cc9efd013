"""The API's own description, served: ``GET /openapi.json`` and ``/openapi.yaml`` (the
document the test suite validates every live reply against, doc/openapi.yaml;
be/api/openapi.yaml is a link to it, so the installed package carries it as data), and ``GET /docs``, Swagger UI over it.

Swagger UI's files come from the swagger-ui-py package (pinned in requirements.txt
and pyproject.toml) and are served by this server from ``/docs/static/``: the page
needs no CDN and works offline. Only its static files are used; the page itself is
ours (BaseLayout, no URL bar, no online validator badge: ``validatorUrl: null``) and
its URLs are relative, so it works behind a path prefix too.
"""
import functools
import json
import os

import yaml
from flask import Blueprint, Response, abort, send_from_directory

SPEC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.yaml")
ASSET_MAX_AGE_S = 3600

bp = Blueprint("docs", __name__)


@functools.lru_cache(maxsize=1)
def spec_text():
    with open(SPEC_PATH, encoding="utf-8") as f:
        return f.read()


@functools.lru_cache(maxsize=1)
def spec_json():
    """The document as JSON, keys in the YAML's order (read once: it is package data)."""
    return json.dumps(yaml.safe_load(spec_text()), ensure_ascii=False)


def assets_dir():
    """Swagger UI's static files inside the installed swagger-ui-py package."""
    import swagger_ui
    return os.path.join(os.path.dirname(os.path.abspath(swagger_ui.__file__)), "static")


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Bookstore API</title>
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="docs/static/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js" charset="utf-8"></script>
  <script>
    window.onload = function () {
      window.ui = SwaggerUIBundle({
        url: "openapi.json",
        dom_id: "#swagger-ui",
        deepLinking: true,
        displayRequestDuration: true,
        validatorUrl: null,
        presets: [SwaggerUIBundle.presets.apis],
        layout: "BaseLayout"
      });
    };
  </script>
</body>
</html>
"""


@bp.get("/docs")
def page():
    """Swagger UI over /openapi.json."""
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/static/<filename>")
def asset(filename):
    """Swagger UI's files (swagger-ui-bundle.js, swagger-ui.css, favicons...)."""
    if filename.startswith("."):
        abort(404, description=f"no such file: {filename}")
    return send_from_directory(assets_dir(), filename, max_age=ASSET_MAX_AGE_S)


@bp.get("/openapi.json")
def openapi_json():
    return Response(spec_json(), mimetype="application/json")


@bp.get("/openapi.yaml")
def openapi_yaml():
    return Response(spec_text(), mimetype="application/yaml")
