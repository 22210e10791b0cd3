"""make bench: delivery through our NGINX vs a bare NGINX over TLS.

wrk, 100 connections over TLS, against (a) our rendered config (signed URL
checked by secure_link, security headers, CORS, gzip for playlists) and (b)
a bare NGINX serving the same files with the same certificate and none of our
config. Targets: segment throughput >= 0.9 of the bare baseline; playlist
p95 latency < 10 ms. Everything runs on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from security.signed_urls import signed_path  # noqa: E402
from tests.delivery.edge import free_port, make_ladder, start_edge, start_nginx  # noqa: E402

JOB = "b" * 32
CONNECTIONS = 100
DURATION_S = int(os.environ.get("BENCH_DELIVERY_SECONDS", "8"))
SEGMENT_BYTES = 2 * 1024**2
SEGMENT_RATIO_TARGET = 0.9
PLAYLIST_P95_TARGET_MS = 10.0

WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d bytes=%d duration_us=%d errors=%d p50_us=%d p95_us=%d\\n",
    summary.requests, summary.bytes, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(95)))
end
"""

BARE_CONF = """
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }}
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /hls/ {{ alias {storage}/processed/; }}
    }}
}}
"""


def wrk(url: str, ca: Path, lua: Path) -> dict:
    out = subprocess.run(["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{DURATION_S}s", "-s", str(lua), url],
                         capture_output=True, text=True, timeout=DURATION_S + 60, check=True).stdout  # fmt: skip
    fields = dict(re.findall(r"(\w+)=(\d+)", out.split("RESULT", 1)[1]))
    seconds = int(fields["duration_us"]) / 1e6
    return {
        "requests": int(fields["requests"]),
        "errors": int(fields["errors"]),
        "req_per_s": int(fields["requests"]) / seconds,
        "mb_per_s": int(fields["bytes"]) / seconds / 1024**2,
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p95_ms": int(fields["p95_us"]) / 1000,
    }


def bench_delivery(repeat: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        root = Path(tmp)
        job_dir = root / "storage" / "processed" / JOB
        make_ladder(job_dir, seconds=4)
        (job_dir / "hls" / "v0" / "big.m4s").write_bytes(os.urandom(SEGMENT_BYTES))
        lua = root / "report.lua"
        lua.write_text(WRK_LUA)
        edge = start_edge(root / "edge", with_api=False, storage=root / "storage")
        bare_dir = root / "bare"
        (bare_dir / "tmp").mkdir(parents=True)
        bare_port = free_port()
        bare_conf = bare_dir / "nginx.conf"
        bare_conf.write_text(BARE_CONF.format(
            user="user root;" if os.geteuid() == 0 else "", dir=bare_dir, port=bare_port,
            cert=edge.tls.cert_chain, key=edge.tls.key, storage=root / "storage"))  # fmt: skip
        bare = start_nginx(bare_conf, bare_dir, bare_port)
        try:
            ours = {name: edge.base + signed_path(JOB, path, ttl_s=3600, secret=edge.secret)
                    for name, path in (("playlist", "v0/index.m3u8"), ("segment", "v0/big.m4s"))}  # fmt: skip
            base = {"playlist": f"https://127.0.0.1:{bare_port}/hls/{JOB}/hls/v0/index.m3u8",
                    "segment": f"https://127.0.0.1:{bare_port}/hls/{JOB}/hls/v0/big.m4s"}  # fmt: skip
            result: dict = {}
            for kind in ("playlist", "segment"):
                runs_ours = [wrk(ours[kind], edge.tls.ca_cert, lua) for _ in range(repeat)]
                runs_base = [wrk(base[kind], edge.tls.ca_cert, lua) for _ in range(repeat)]
                result[kind] = {"ours": max(runs_ours, key=lambda r: r["req_per_s"]),
                                "bare": max(runs_base, key=lambda r: r["req_per_s"])}  # fmt: skip
        finally:
            bare.terminate()
            bare.wait(15)
            edge.stop()
    seg = result["segment"]
    result["segment_throughput_ratio"] = seg["ours"]["mb_per_s"] / seg["bare"]["mb_per_s"]
    return result


def print_delivery(result: dict) -> None:
    print(f"\n== delivery: wrk {CONNECTIONS} connections over TLS, {DURATION_S} s each; ours vs bare NGINX")
    print(f"{'':<34}{'bare':>12}{'ours':>12}{'ratio':>8}{'target':>12}")
    for kind in ("playlist", "segment"):
        ours, bare = result[kind]["ours"], result[kind]["bare"]
        print(f"{kind + ' req/s':<34}{bare['req_per_s']:>12.0f}{ours['req_per_s']:>12.0f}"
              f"{ours['req_per_s'] / bare['req_per_s']:>8.3f}")  # fmt: skip
        print(f"{kind + ' MB/s':<34}{bare['mb_per_s']:>12.1f}{ours['mb_per_s']:>12.1f}"
              f"{ours['mb_per_s'] / bare['mb_per_s']:>8.3f}"
              f"{'>= 0.9' if kind == 'segment' else '':>12}")  # fmt: skip
        print(f"{kind + ' p95 latency (ms)':<34}{bare['p95_ms']:>12.2f}{ours['p95_ms']:>12.2f}"
              f"{ours['p95_ms'] / max(bare['p95_ms'], 1e-3):>8.3f}"
              f"{'< 10 ms' if kind == 'playlist' else '':>12}")  # fmt: skip
        if ours["errors"] or bare["errors"]:
            print(f"  {kind}: errors ours={ours['errors']} bare={bare['errors']}")
    ratio = result["segment_throughput_ratio"]
    p95 = result["playlist"]["ours"]["p95_ms"]
    print(f"segment throughput ratio {ratio:.3f} -> {'PASS' if ratio >= SEGMENT_RATIO_TARGET else 'MISS'}; "
          f"playlist p95 {p95:.2f} ms -> {'PASS' if p95 < PLAYLIST_P95_TARGET_MS else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    print_delivery(bench_delivery(int(os.environ.get("BENCH_REPEAT", "1"))))
