"""Render the NGINX configs from ``nginx/*.conf.template`` and ``nginx/snippets/``.

Templates are :class:`string.Template` text whose placeholders are
``${UPPER_CASE}`` only, so NGINX's own ``$variables`` pass through untouched.
Every rendered file is written 0600 into one directory (the main config
holds the URL signing secret).

    python -m nginx.render local        # <var>/nginx/nginx.conf for `make up`
    python -m nginx.render production --server-name media.example.com --out DIR

``local`` also makes the local CA + leaf (security/tls.py) and vendors hls.js,
and prints ``conf=...`` and ``ca=...`` lines for scripts/stack.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from include.config import PROJECT_ROOT, get_settings

NGINX_DIR = PROJECT_ROOT / "nginx"
SNIPPETS_DIR = NGINX_DIR / "snippets"
STATIC_DIR = NGINX_DIR / "static"
HLS_JS_VERSION = "1.7.4"
# sha256 of dist/hls.min.js in hls.js@1.7.4 from the npm registry.
HLS_JS_SHA256 = "cfc70cc9e9fc63d071919e087670abc760c8fd1bc889b88588026e4d22193bbe"
_RATE = re.compile(r"[0-9]+r/[sm]")


class NginxTemplate(Template):
    """``${NAME}`` (upper case) only; ``$name`` and ``${name}`` are NGINX's."""

    pattern = r"""
    \$(?:
      (?P<escaped>(?!))|
      (?P<named>(?!))|
      \{(?P<braced>[A-Z][A-Z0-9_]*)\}|
      (?P<invalid>(?!))
    )
    """


def render_text(text: str, values: dict[str, object]) -> str:
    return NginxTemplate(text).substitute({k: str(v) for k, v in values.items()})


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _render_tree(template: Path, out_dir: Path, values: dict[str, object]) -> Path:
    values = {**values, "SNIPPETS": out_dir / "snippets"}
    for snippet in sorted(SNIPPETS_DIR.glob("*.conf")):
        _write_private(out_dir / "snippets" / snippet.name, render_text(snippet.read_text(), values))
    conf = out_dir / "nginx.conf"
    _write_private(conf, render_text(template.read_text(), values))
    return conf


@dataclass(frozen=True)
class LocalConfig:
    out_dir: Path
    https_port: int
    http_port: int
    api_upstream: str  # host:port of gunicorn
    storage_dir: Path  # holds processed/<job>/...
    tls_cert: Path
    tls_key: Path
    secret: str
    vendor_dir: Path
    max_upload_bytes: int = 20 * 1024**3
    api_rate: str = "20r/s"
    api_burst: int = 40
    bind: str = "127.0.0.1"
    workers: int = 1
    static_dir: Path = STATIC_DIR
    acme_webroot: Path | None = None  # default: <out_dir>/acme-webroot


def _common(secret: str, api_upstream: str, api_rate: str, api_burst: int, max_upload_bytes: int,
            vendor_dir: Path, static_dir: Path) -> dict[str, object]:  # fmt: skip
    from security.signed_urls import check_secret

    if not _RATE.fullmatch(api_rate):
        raise ValueError(f"API rate must look like 20r/s or 600r/m, got {api_rate!r}")
    if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:[0-9]+", api_upstream):
        raise ValueError(f"API upstream must be host:port, got {api_upstream!r}")
    return {
        "HLS_SECRET": check_secret(secret),
        "API_UPSTREAM": api_upstream,
        "API_RATE": api_rate,
        "API_BURST": int(api_burst),
        "MAX_UPLOAD_BYTES": int(max_upload_bytes),
        "VENDOR_DIR": vendor_dir,
        "STATIC_DIR": static_dir,
    }


def render_local(cfg: LocalConfig) -> Path:
    """Write ``<out_dir>/nginx.conf`` (+ snippets) for a local NGINX; returns its path."""
    run_dir, log_dir, temp_dir = cfg.out_dir / "run", cfg.out_dir / "log", cfg.out_dir / "tmp"
    for d in (run_dir, log_dir, temp_dir):
        d.mkdir(parents=True, exist_ok=True)
    values = {
        **_common(cfg.secret, cfg.api_upstream, cfg.api_rate, cfg.api_burst, cfg.max_upload_bytes,
                  cfg.vendor_dir, cfg.static_dir),  # fmt: skip
        "WORKERS": cfg.workers,
        # Started as root, workers would drop to `nobody` and could not read
        # the private var/ tree: keep the starting user (a no-op otherwise).
        "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "# (not root: workers run as this user)",
        "RUN_DIR": run_dir,
        "LOG_DIR": log_dir,
        "TEMP_DIR": temp_dir,
        "BIND": cfg.bind,
        "HTTPS_PORT": int(cfg.https_port),
        "HTTP_PORT": int(cfg.http_port),
        "TLS_CERT": cfg.tls_cert,
        "TLS_KEY": cfg.tls_key,
        "STORAGE_DIR": cfg.storage_dir,
        "ACME_WEBROOT": cfg.acme_webroot or cfg.out_dir / "acme-webroot",
    }
    return _render_tree(NGINX_DIR / "local.conf.template", cfg.out_dir, values)


def render_production(out_dir: Path, *, server_name: str, secret: str, api_upstream: str = "api:5000",
                      s3_endpoint: str = "http://minio:9000", s3_bucket: str = "transcode",
                      resolver: str = "127.0.0.11", acme_webroot: str = "/var/www/acme",
                      max_upload_bytes: int = 20 * 1024**3, api_rate: str = "20r/s", api_burst: int = 40,
                      hls_cache_size: str = "10g", static_dir: str = "/opt/transcode-flow/nginx/static",
                      vendor_dir: str = "/opt/transcode-flow/var/www/vendor") -> Path:  # fmt: skip
    if not re.fullmatch(r"[A-Za-z0-9.-]+", server_name):
        raise ValueError(f"not a host name: {server_name!r}")
    values = {
        **_common(secret, api_upstream, api_rate, api_burst, max_upload_bytes, Path(vendor_dir), Path(static_dir)),
        "SERVER_NAME": server_name,
        "S3_ENDPOINT": s3_endpoint.rstrip("/"),
        "S3_HOST": re.sub(r"^https?://", "", s3_endpoint).rstrip("/"),
        "S3_BUCKET": s3_bucket,
        "RESOLVER": resolver,
        "ACME_WEBROOT": acme_webroot,
        "HLS_CACHE_SIZE": hls_cache_size,
    }
    return _render_tree(NGINX_DIR / "production.conf.template", out_dir, values)


def ensure_hls_js(vendor_dir: Path, npm_dir: Path) -> Path:
    """``<vendor_dir>/hls.min.js`` from ``npm pack hls.js@HLS_JS_VERSION`` (never a CDN)."""
    target = vendor_dir / "hls.min.js"
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == HLS_JS_SHA256:
        return target
    npm_dir.mkdir(parents=True, exist_ok=True)
    tarball = npm_dir / f"hls.js-{HLS_JS_VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed once to vendor hls.js (scripts/install_deps.sh installs it)")
        subprocess.run([npm, "pack", f"hls.js@{HLS_JS_VERSION}", "--pack-destination", str(npm_dir),
                        "--silent"], check=True, capture_output=True, timeout=300)  # fmt: skip
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("package/dist/hls.min.js")
        if member is None:
            raise RuntimeError(f"{tarball} has no package/dist/hls.min.js")
        data = member.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != HLS_JS_SHA256:
        raise RuntimeError(f"hls.min.js from {tarball} has sha256 {digest}, expected {HLS_JS_SHA256}")
    vendor_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=vendor_dir, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, target)
    return target


ACME_ENV = "acme.env"


def acme_certificate(tls_dir: Path) -> tuple[Path, Path] | None:
    """The Let's Encrypt certificate scripts/setup_ssl installed, if any (else the local CA's leaf)."""
    record = tls_dir / ACME_ENV
    if not record.is_file():
        return None
    values = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
    cert, key = Path(values.get("TLS_CERT", "")), Path(values.get("TLS_KEY", ""))
    return (cert, key) if cert.is_file() and key.is_file() else None


def _local_from_env() -> tuple[Path, Path]:
    from security.signed_urls import signing_secret
    from security.tls import ensure_local_tls

    settings = get_settings()
    var = settings.var_dir
    tls = ensure_local_tls(var / "tls")
    # The npm tarball is cached in the checkout's var/ (private stacks reuse it).
    vendor = ensure_hls_js(var / "www" / "vendor", PROJECT_ROOT / "var" / "npm")
    storage = settings.storage_url
    if not storage.startswith("file://"):
        raise SystemExit("the local NGINX serves file storage; use the production template for s3:// storage")
    env = os.environ
    cert, key = acme_certificate(var / "tls") or (tls.cert_chain, tls.key)
    cfg = LocalConfig(
        out_dir=var / "nginx",
        https_port=int(env.get("TRANSCODE_HTTPS_PORT") or 8443),
        http_port=int(env.get("TRANSCODE_HTTP_PORT") or 8081),
        api_upstream=env.get("TRANSCODE_API_BIND") or "127.0.0.1:5000",
        storage_dir=Path(storage.removeprefix("file://")),
        tls_cert=cert,
        tls_key=key,
        secret=signing_secret(),
        acme_webroot=var / "acme-webroot",
        vendor_dir=vendor.parent,
        max_upload_bytes=settings.max_upload_bytes,
        api_rate=env.get("TRANSCODE_API_RATE") or "20r/s",
        api_burst=int(env.get("TRANSCODE_API_BURST") or 40),
    )
    return render_local(cfg), tls.ca_cert


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nginx.render")
    sub = parser.add_subparsers(dest="which", required=True)
    sub.add_parser("local", help="the local stack's config under <var>/nginx (reads TRANSCODE_* env)")
    prod = sub.add_parser("production", help="the production config (secret from the secrets provider)")
    prod.add_argument("--server-name", required=True)
    prod.add_argument("--out", type=Path, required=True)
    prod.add_argument("--api-upstream", default="api:5000")
    prod.add_argument("--s3-endpoint", default="http://minio:9000")
    prod.add_argument("--s3-bucket", default="transcode")
    args = parser.parse_args(argv)
    if args.which == "local":
        conf, ca = _local_from_env()
        print(f"conf={conf}\nca={ca}")
    else:
        from security.signed_urls import signing_secret

        conf = render_production(args.out, server_name=args.server_name, secret=signing_secret(),
                                 api_upstream=args.api_upstream, s3_endpoint=args.s3_endpoint,
                                 s3_bucket=args.s3_bucket,
                                 max_upload_bytes=get_settings().max_upload_bytes)  # fmt: skip
        print(f"conf={conf}")


if __name__ == "__main__":
    main()
