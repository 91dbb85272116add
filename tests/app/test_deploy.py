"""The deployment files agree with the code: the proxy example sends the headers ``ui/http_guard.py`` sends and
closes what it closes, and ``.streamlit/config.toml`` turns off what Scute does not use (issue 15, finding 10)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from ui.http_guard import CLOSED_PATHS, SECURITY_HEADERS

REPO = Path(__file__).resolve().parents[2]
NGINX = (REPO / "docs" / "deploy" / "nginx.conf").read_text()
CONFIG = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def _directives(text: str) -> list[str]:
    """The configuration's directives, comments dropped and whitespace collapsed."""
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_the_proxy_example_sends_every_security_header_on_every_answer() -> None:
    directives = _directives(NGINX)
    for name, value in SECURITY_HEADERS:
        assert f'add_header {name} "{value}" always;' in directives, name
        assert f"proxy_hide_header {name};" in directives, name  # not doubled with serve.py's copy
    server_block = "\n".join(directives).split("server {", 1)[1].split("location", 1)[0]
    assert "add_header X-Frame-Options" in server_block  # declared once at server level, inherited by all
    assert not re.search(r"location[^{]*\{[^}]*add_header", NGINX), "an add_header in a location drops the others"


def test_the_proxy_example_closes_metrics_and_forwards_the_real_client() -> None:
    directives = _directives(NGINX)
    for path in CLOSED_PATHS:
        block = re.search(r"location = " + re.escape(path) + r" \{\s*return 404;\s*\}", NGINX)
        assert block is not None, path
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in directives
    assert not any("$proxy_add_x_forwarded_for" in d for d in directives)  # a client could pre-fill it
    assert "proxy_set_header Upgrade $http_upgrade;" in directives  # the app is a websocket
    limit = next(int(d.split()[1].rstrip("m;")) for d in directives if d.startswith("client_max_body_size"))
    assert limit >= CONFIG["server"]["maxUploadSize"]


def test_streamlit_serves_nothing_scute_does_not_use() -> None:
    server = CONFIG["server"]
    assert server["enableXsrfProtection"] is True
    assert server.get("enableCORS", True) is True  # XSRF protection needs it
    assert server["enableStaticServing"] is False
    assert server["enableAgentApi"] is False
