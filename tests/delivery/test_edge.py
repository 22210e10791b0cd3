"""What the rendered NGINX config serves: security headers on every response
type, signed HLS from file storage (secure_link), MIME types, caching, CORS,
byte ranges, gzip, and the proxied API. Real NGINX + gunicorn, no mocks."""

from __future__ import annotations

import re
import time

import pytest
import requests

from security.signed_urls import signed_path, token
from tests.delivery.conftest import JOB, OTHER_JOB

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-XSS-Protection": "0",
}


def get(delivery, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 10)
    return requests.get(delivery.edge.base + path, verify=str(delivery.edge.tls.ca_cert), **kwargs)


def signed(delivery, path: str, job: str = JOB, ttl_s: int = 600) -> str:
    return signed_path(job, path, ttl_s=ttl_s, secret=delivery.edge.secret)


def assert_security_headers(r: requests.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (r.url, r.status_code, name, r.headers.get(name))
    csp = r.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'",
                      "media-src 'self' blob:", "worker-src 'self' blob:"):  # fmt: skip
        assert directive in csp, (r.url, csp)
    assert "camera=()" in r.headers["Permissions-Policy"]
    assert r.headers.get("Server") == "nginx", "server_tokens off: no version"
    for name in SECURITY_HEADERS:  # exactly one copy each (the API's own are hidden)
        assert len(r.raw.headers.getlist(name)) == 1, (r.url, name)


@pytest.mark.parametrize("case", ["page", "player", "static", "api-401", "api-404", "health", "hls-200",
                                  "hls-403", "hls-404", "not-found", "api-413"])  # fmt: skip
def test_security_headers_on_every_response_type(delivery, case: str) -> None:
    expected = {
        "page": ("/", 200), "player": (f"/watch/{delivery.job}", 200), "static": ("/static/player.js", 200),
        "api-401": ("/api/jobs", 401), "api-404": ("/api/jobs/" + "0" * 32, 404), "health": ("/healthz", 200),
        "hls-200": (signed(delivery, "master.m3u8"), 200), "hls-403": (f"/hls/{JOB}/master.m3u8", 403),
        "hls-404": (signed(delivery, "v0/nope.m4s"), 404), "not-found": ("/nothing-here", 404),
    }  # fmt: skip
    headers = {"X-API-Key": delivery.api_key}
    if case == "api-413":
        r = requests.post(delivery.edge.base + "/api/upload", data=b"x" * (51 * 1024**2), headers=headers,
                          verify=str(delivery.edge.tls.ca_cert), timeout=30)  # fmt: skip
        assert r.status_code == 413
        assert r.json()["error"]["code"] in ("too_large", "payload_too_large", "request_too_large") or r.json()["error"]
    else:
        path, status = expected[case]
        r = get(delivery, path, headers=headers if case == "api-404" else {})
        assert r.status_code == status, (path, r.text[:200])
    assert_security_headers(r)


def test_api_is_proxied_with_forwarded_headers(delivery) -> None:
    r = get(delivery, f"/api/jobs/{delivery.job}", headers={"X-API-Key": delivery.api_key})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed"
    master = body["outputs"]["master_url"]
    # Signed for the edge's own origin; playable as handed out.
    assert master.startswith(delivery.edge.base + "/hls/")
    m = get(delivery, master.removeprefix(delivery.edge.base))
    assert m.status_code == 200 and m.text.startswith("#EXTM3U")
    assert r.headers["Cache-Control"] == "no-store"


def test_rate_limit_answers_json_429(tmp_path) -> None:
    from tests.delivery.edge import start_edge

    edge = start_edge(tmp_path, api_rate="1r/s", api_burst=2)
    try:
        codes = []
        for _ in range(8):
            r = requests.get(edge.base + "/api/jobs", verify=str(edge.tls.ca_cert), timeout=5)
            codes.append(r.status_code)
        assert 429 in codes and codes[0] == 401, codes
        limited = next(r for r in [requests.get(edge.base + "/api/jobs", verify=str(edge.tls.ca_cert), timeout=5)]
                       if r.status_code == 429)  # fmt: skip
        assert limited.headers["Content-Type"] == "application/json"
        assert limited.json()["error"]["code"] == "rate_limited"
        assert limited.headers["Retry-After"] == "1"
        assert_security_headers(limited)
    finally:
        edge.stop()


# ------------------------------------------------------------------ signed HLS


def test_signed_master_and_relative_uris_resolve_under_the_signature(delivery) -> None:
    master_path = signed(delivery, "master.m3u8")
    master = get(delivery, master_path)
    assert master.status_code == 200
    prefix = master_path.rsplit("/", 1)[0]
    variants = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert len(variants) == 2
    for variant in variants:
        media = get(delivery, f"{prefix}/{variant}")
        assert media.status_code == 200
        base = f"{prefix}/{variant.rsplit('/', 1)[0]}"
        uris = re.findall(r'URI="([^"]+)"', media.text) + [
            line for line in media.text.splitlines() if line and not line.startswith("#")]  # fmt: skip
        assert len(uris) >= 3
        for uri in uris:
            r = get(delivery, f"{base}/{uri}")
            assert r.status_code == 200 and len(r.content) > 0, uri


def test_poster_maps_to_the_job_root(delivery) -> None:
    r = get(delivery, signed(delivery, "poster.jpg"))
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize("attack", ["unsigned", "tampered-token", "tampered-expiry", "expired", "other-job",
                                    "bad-secret"])  # fmt: skip
def test_bad_signatures_are_403(delivery, attack: str) -> None:
    good = signed(delivery, "master.m3u8")
    _, _, tok, expires, job, rest = good.split("/", 5)
    if attack == "unsigned":
        path = f"/hls/{JOB}/master.m3u8"
    elif attack == "tampered-token":
        flipped = ("A" if tok[5] != "A" else "B")
        path = f"/hls/{tok[:5]}{flipped}{tok[6:]}/{expires}/{job}/{rest}"
    elif attack == "tampered-expiry":
        path = f"/hls/{tok}/{int(expires) + 1}/{job}/{rest}"
    elif attack == "expired":
        past = int(time.time()) - 5
        path = f"/hls/{token(JOB, past, delivery.edge.secret)}/{past}/{JOB}/master.m3u8"
    elif attack == "other-job":  # a valid signature for JOB does not open OTHER_JOB
        path = f"/hls/{tok}/{expires}/{OTHER_JOB}/{rest}"
    else:
        path = signed_path(JOB, "master.m3u8", ttl_s=600, secret="not-the-secret-0123456789")
    r = get(delivery, path)
    assert r.status_code == 403, (attack, path)
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    # And the same file with a correct signature is there.
    assert get(delivery, signed(delivery, "master.m3u8", job=OTHER_JOB)).status_code == 200


def test_traversal_out_of_the_job_prefix_is_refused(delivery) -> None:
    tok_path = signed(delivery, "master.m3u8")
    prefix = tok_path.rsplit("/", 1)[0]
    for evil in ("../" + OTHER_JOB + "/hls/master.m3u8", "..%2f..%2f..%2fapi.db", "%2e%2e/%2e%2e/api.db"):
        r = get(delivery, f"{prefix}/{evil}")
        assert r.status_code in (400, 403, 404), (evil, r.status_code)
        assert not r.content.startswith(b"#EXTM3U") and b"SQLite" not in r.content


def test_mime_cache_control_cors(delivery) -> None:
    cases = {
        "master.m3u8": ("application/vnd.apple.mpegurl", "public, max-age=10"),
        "v0/index.m3u8": ("application/vnd.apple.mpegurl", "public, max-age=10"),
        "v0/seg_1.m4s": ("video/iso.segment", "public, max-age=31536000, immutable"),
        "v0/init_0.mp4": ("video/mp4", "public, max-age=31536000, immutable"),
    }
    for path, (mime, cache) in cases.items():
        r = get(delivery, signed(delivery, path), headers={"Origin": "https://player.example"})
        assert r.status_code == 200, path
        assert r.headers["Content-Type"] == mime, path
        assert r.headers["Cache-Control"] == cache, path
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert_security_headers(r)
    pre = requests.options(delivery.edge.base + signed(delivery, "v0/seg_1.m4s"), verify=str(delivery.edge.tls.ca_cert),
                           headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET",
                                    "Access-Control-Request-Headers": "range"}, timeout=5)  # fmt: skip
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "*" and "Range" in pre.headers["Access-Control-Allow-Headers"]


def test_byte_ranges_and_gzip(delivery) -> None:
    seg = signed(delivery, "v0/seg_1.m4s")
    whole = get(delivery, seg).content
    r = get(delivery, seg, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    assert r.content == whole[100:200]
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    playlist = get(delivery, signed(delivery, "v0/index.m3u8"), headers={"Accept-Encoding": "gzip"}, stream=True)
    assert playlist.headers.get("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in playlist.headers.get("Vary", "")
    segment = get(delivery, seg, headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in segment.headers  # media is not recompressed


def test_rendered_config_is_private(delivery) -> None:
    conf = delivery.edge.conf
    rendered = [conf, *sorted((conf.parent / "snippets").glob("*.conf"))]
    for path in rendered:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert any(delivery.edge.secret in path.read_text() for path in rendered)
    assert "server_tokens off;" in (conf.parent / "snippets" / "http_common.conf").read_text()
