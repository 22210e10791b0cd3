"""A real delivery edge for tests and benchmarks: NGINX from the rendered
local config (nginx/render.py) on free ports, in front of the real job API
under gunicorn, serving a real fMP4 HLS ladder made by ffmpeg. No mocks."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from include.config import PROJECT_ROOT
from nginx.render import LocalConfig, ensure_hls_js, render_local
from security.tls import TlsFiles, ensure_local_tls
from tests.stack import free_port

SECRET = "delivery-test-secret-0123456789abcdef"


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")


def make_ladder(job_dir: Path, seconds: int = 12) -> Path:
    """processed/<job>/hls/{master.m3u8, v0/, v1/} (fMP4, 2 s segments) + poster.jpg."""
    hls = job_dir / "hls"
    hls.mkdir(parents=True, exist_ok=True)
    cmd = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
        "-filter_complex", "[0:v]split=2[a][b];[b]scale=320:180[b2]",
        "-map", "[a]", "-map", "[b2]", "-map", "1:a", "-map", "1:a",
        "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
        "-b:v:0", "800k", "-b:v:1", "250k", "-c:a", "aac", "-b:a", "64k",
        "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
        "-hls_segment_filename", str(hls / "v%v" / "seg_%d.m4s"),
        "-master_pl_name", "master.m3u8", "-var_stream_map", "v:0,a:0 v:1,a:1",
        str(hls / "v%v" / "index.m3u8"),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=1:duration=1", "-frames:v", "1", str(job_dir / "poster.jpg")],
                   check=True, timeout=60)  # fmt: skip
    return hls / "master.m3u8"


@dataclass
class Edge:
    root: Path
    https_port: int
    http_port: int
    api_port: int
    tls: TlsFiles
    secret: str
    storage: Path
    conf: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def ssl_context(self, **kwargs) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.tls.ca_cert))
        for name, value in kwargs.items():
            setattr(ctx, name, value)
        return ctx

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def start_nginx(conf: Path, log_dir: Path, port: int) -> subprocess.Popen:
    log = log_dir / "nginx-stderr.log"
    test = subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-e", str(log_dir / "nginx-error.log")],
                          capture_output=True, text=True)  # fmt: skip
    if test.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{test.stderr}")
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-e", str(log_dir / "nginx-error.log"), "-g", "daemon off;"],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    wait_port(port, proc, log)
    return proc


def start_edge(root: Path, *, api_env: dict[str, str] | None = None, with_api: bool = True,
               api_rate: str = "20r/s", api_burst: int = 40, max_upload_bytes: int = 50 * 1024**2,
               storage: Path | None = None, workers: int = 1) -> Edge:  # fmt: skip
    """NGINX (+ the API under gunicorn unless ``with_api=False``) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    storage = storage or root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    tls = ensure_local_tls(root / "tls")
    vendor = ensure_hls_js(PROJECT_ROOT / "var" / "www" / "vendor", PROJECT_ROOT / "var" / "npm")
    edge = Edge(root=root, https_port=free_port(), http_port=free_port(), api_port=free_port(), tls=tls,
                secret=SECRET, storage=storage, conf=root / "nginx" / "nginx.conf")  # fmt: skip
    try:
        if with_api:
            env = {
                **os.environ,
                "TRANSCODE_VAR_DIR": str(root),
                "TRANSCODE_DATABASE_URL": f"sqlite:///{root / 'api.db'}",
                "TRANSCODE_STORAGE_URL": storage.as_uri(),
                "TRANSCODE_PUBLIC_BASE_URL": edge.base,
                "TRANSCODE_TRUSTED_PROXIES": "1",
                "TRANSCODE_HLS_SIGNING_SECRET": SECRET,
                "TRANSCODE_SECRETS_PROVIDER": "env",
                "TRANSCODE_MAX_UPLOAD_BYTES": str(max_upload_bytes),
                **(api_env or {}),
            }
            from include.jobs.db import migrate

            migrate(env["TRANSCODE_DATABASE_URL"])
            log = root / "gunicorn.log"
            api = subprocess.Popen(
                [str(Path(os.sys.executable).parent / "gunicorn"), "--config", str(PROJECT_ROOT / "gunicorn.conf.py"),
                 "--bind", f"127.0.0.1:{edge.api_port}", "--workers", "1", "api.wsgi:app"],
                env=env, cwd=PROJECT_ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
            edge.procs.append(api)
            wait_port(edge.api_port, api, log)
        edge.conf = render_local(LocalConfig(
            out_dir=root / "nginx", https_port=edge.https_port, http_port=edge.http_port,
            api_upstream=f"127.0.0.1:{edge.api_port}", storage_dir=storage, tls_cert=tls.cert_chain,
            tls_key=tls.key, secret=SECRET, vendor_dir=vendor.parent, max_upload_bytes=max_upload_bytes,
            api_rate=api_rate, api_burst=api_burst, workers=workers,
        ))  # fmt: skip
        edge.procs.append(start_nginx(edge.conf, root / "nginx" / "log", edge.https_port))
    except BaseException:
        edge.stop()
        raise
    return edge
