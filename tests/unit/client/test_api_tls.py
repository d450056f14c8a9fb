"""The client's TLS settings: an https server is verified against httpx's default roots; for a
plain-http server no CA bundle is loaded, and the context in its place refuses every
certificate (a plain-http client must never end up trusting a TLS peer)."""

from __future__ import annotations

import ssl

from accord.client.api import _verify_for


def test_https_servers_are_verified_with_the_default_roots() -> None:
    assert _verify_for("https://chat.example.org") is True
    assert _verify_for("HTTPS://chat.example.org") is True


def test_a_plain_http_server_gets_a_context_that_trusts_nothing() -> None:
    context = _verify_for("http://127.0.0.1:8000")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0
