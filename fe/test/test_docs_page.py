"""GET /docs in a real browser: headless Chromium (Debian's ``chromium`` package, which
.ci/run installs when missing) loads the page from the test server with every other
host unresolvable, so the page works only if its scripts, styles and the OpenAPI
document all come from this server. Swagger UI draws the operations with
JavaScript, so finding them in the rendered DOM means the page really ran.
Skipped, saying why, where no Chromium is installed."""
import logging
import re
import shutil
import subprocess

import pytest

from fe import conf

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (apt-get install -y chromium; "
                             ".ci/run installs it in CI)")


def render(url, profile):
    """The DOM of ``url`` after its scripts ran (up to 15 s of virtual time)."""
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={profile}",
         # offline: no name resolves but the test server's address
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
         "--virtual-time-budget=15000", "--dump-dom", url],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_the_docs_page_lists_the_operations_offline(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bookstore.access")
    dom = render(conf.URL + "docs", tmp_path)
    drawn = set(re.findall(r'data-path="([^"]+)"', dom))
    for path in ("/buyer/new_order", "/buyer/payment", "/auth/login", "/orders/{order_id}",
                 "/search/books", "/health", "/ready", "/metrics"):
        assert path in drawn, (path, sorted(drawn))
    assert "Bookstore API" in dom
    # what the browser fetched, from this server's access log
    fetched = {(r.fields["path"], r.fields["status"]) for r in caplog.records
               if r.name == "bookstore.access"}
    for path in ("/docs", "/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css",
                 "/openapi.json"):
        assert (path, 200) in fetched, (path, sorted(fetched))
