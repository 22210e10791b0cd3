"""H.264 encoder selection: hardware only when a real test encode works.

``ffmpeg -encoders`` lists h264_nvenc on machines without any GPU, so the
list proves nothing; a one-frame encode does. The result is cached per worker
(host + ffmpeg build) on disk because every Airflow task is a new process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from include.config import Settings, get_settings

log = logging.getLogger(__name__)

CPU_ENCODER = "libx264"
HW_ENCODERS = ("h264_nvenc", "h264_qsv", "h264_vaapi")
VAAPI_DEVICE = os.environ.get("TRANSCODE_VAAPI_DEVICE", "/dev/dri/renderD128")
CACHE_TTL_S = 24 * 3600
TEST_TIMEOUT_S = 20


@dataclass(frozen=True)
class EncoderSpec:
    """Encoder-specific ffmpeg arguments around the common scale chain."""

    name: str
    hw_init: tuple[str, ...]  # global options before the input
    upload_filter: str  # appended to the filter chain ('' for software)
    is_gpu: bool


def spec_for(name: str) -> EncoderSpec:
    if name == "h264_nvenc":
        return EncoderSpec(name, (), "", True)
    if name == "h264_qsv":
        return EncoderSpec(
            name, ("-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"), "format=nv12,hwupload=extra_hw_frames=64", True
        )
    if name == "h264_vaapi":
        return EncoderSpec(name, ("-vaapi_device", VAAPI_DEVICE), "format=nv12,hwupload", True)
    if name == CPU_ENCODER:
        return EncoderSpec(name, (), "", False)
    raise ValueError(f"unknown encoder {name!r}")


def test_encode_command(name: str) -> list[str]:
    """One black 256x256 frame through the encoder; success means it works."""
    spec = spec_for(name)
    vf = "format=yuv420p" + (f",{spec.upload_filter}" if spec.upload_filter else "")
    return [
        "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", *spec.hw_init,
        "-f", "lavfi", "-i", "color=c=black:s=256x256:r=25:d=0.04",
        "-vf", vf, "-frames:v", "1", "-c:v", name, "-f", "null", "-",
    ]  # fmt: skip


def encoder_works(name: str) -> tuple[bool, str]:
    """Run the test encode; returns (works, reason)."""
    try:
        proc = subprocess.run(test_encode_command(name), capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"test encode did not finish: {exc}"
    if proc.returncode == 0:
        return True, "test encode succeeded"
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    return False, f"test encode failed (exit {proc.returncode}): {tail}"


def _cache_path(settings: Settings) -> Path:
    from include.media.probe import ffmpeg_version

    tag = "".join(c if c.isalnum() else "_" for c in f"{socket.gethostname()}-{ffmpeg_version()}")
    return settings.scratch_dir / "encoder-cache" / f"{tag[:150]}.json"


def detect_hw_encoders(settings: Settings | None = None, *, use_cache: bool = True) -> dict[str, str]:
    """Map of working hardware encoders to the reason we believe they work.

    ``TRANSCODE_HW_ENCODERS``: ``auto`` (test each), ``off`` (never), or a
    comma list to test only those.
    """
    settings = settings or get_settings()
    mode = settings.hw_encoders.strip().lower()
    if mode in {"off", "none", "0", "false"}:
        return {}
    candidates = HW_ENCODERS if mode == "auto" else tuple(n.strip() for n in mode.split(",") if n.strip())
    cache = _cache_path(settings)
    if use_cache and cache.exists() and time.time() - cache.stat().st_mtime < CACHE_TTL_S:
        try:
            cached = json.loads(cache.read_text())
            if cached.get("candidates") == list(candidates):
                return dict(cached["working"])
        except (ValueError, KeyError):
            pass  # unreadable cache: detect again
    working: dict[str, str] = {}
    for name in candidates:
        ok, reason = encoder_works(name)
        log.info("encoder %s: %s", name, reason)
        if ok:
            working[name] = reason
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps({"candidates": list(candidates), "working": working}))
    os.replace(tmp, cache)
    return working


def choose_video_encoder(settings: Settings | None = None) -> str:
    """The preferred working H.264 encoder on this worker (GPU first)."""
    working = detect_hw_encoders(settings)
    for name in HW_ENCODERS:
        if name in working:
            return name
    return CPU_ENCODER
