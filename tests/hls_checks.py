"""Independent checks of a published HLS ladder, as a player and a validator see it.

Used by the end-to-end tests and the benchmark. These re-measure everything
from the files with ffmpeg/ffprobe instead of trusting the pipeline's own
numbers.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from include.media.hls import parse_attributes, parse_media_playlist


@dataclass
class VariantCheck:
    uri: str
    width: int
    height: int
    bandwidth: int
    peak_bps: float
    duration: float
    boundaries: list[float]
    pix_fmt: str
    profile: str


def _ffprobe_json(args: list[str]) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", *args],
                         capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return json.loads(out.stdout)


def decode_errors(playlist: Path) -> str:
    """Decode a media playlist to the end; returns ffmpeg's error output ('' when clean)."""
    proc = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", "file", "-i", str(playlist), "-f", "null", "-"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return proc.stderr.strip() or ("" if proc.returncode == 0 else f"exit {proc.returncode}")


def read_master(master: Path) -> tuple[list[dict], list[dict]]:
    """(variants, media) attribute dicts; each variant has its 'URI'."""
    variants, media = [], []
    lines = master.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = parse_attributes(line)
            attrs["URI"] = lines[index + 1].strip()
            variants.append(attrs)
        elif line.startswith("#EXT-X-MEDIA:"):
            media.append(parse_attributes(line))
    return variants, media


def check_variant(master_dir: Path, attrs: dict) -> VariantCheck:
    playlist = master_dir / attrs["URI"]
    segments = parse_media_playlist(playlist.read_text())
    peak = max((playlist.parent / uri).stat().st_size * 8 / duration for uri, duration in segments)
    boundaries, t = [], 0.0
    for _, duration in segments:
        t += duration
        boundaries.append(round(t, 3))
    stream = _ffprobe_json(["-protocol_whitelist", "file", "-show_streams", "-select_streams", "v:0", str(playlist)])["streams"][0]
    width, height = (int(v) for v in attrs["RESOLUTION"].split("x"))
    return VariantCheck(
        uri=attrs["URI"], width=width, height=height, bandwidth=int(attrs["BANDWIDTH"]), peak_bps=peak,
        duration=sum(d for _, d in segments), boundaries=boundaries,
        pix_fmt=stream["pix_fmt"], profile=stream.get("profile", ""),
    )  # fmt: skip


def assert_valid_ladder(master: Path, source_display: tuple[int, int], source_duration: float) -> list[VariantCheck]:
    """Every acceptance rule for an output, asserted; returns the per-variant facts."""
    master_dir = master.parent
    text = master.read_text()
    assert text.startswith("#EXTM3U") and "#EXT-X-INDEPENDENT-SEGMENTS" in text
    variants, media = read_master(master)
    assert variants, "master lists no variants"
    src_w, src_h = source_display
    checks = []
    for attrs in variants:
        for key in ("BANDWIDTH", "AVERAGE-BANDWIDTH", "RESOLUTION", "CODECS", "FRAME-RATE"):
            assert key in attrs, f"{attrs['URI']}: {key} missing"
        check = check_variant(master_dir, attrs)
        errors = decode_errors(master_dir / attrs["URI"])
        assert errors == "", f"{check.uri} does not decode cleanly: {errors[:500]}"
        assert check.width % 2 == 0 and check.height % 2 == 0, f"{check.uri}: odd dimensions"
        assert check.height <= max(src_w, src_h) and check.width <= max(src_w, src_h)
        assert min(check.width, check.height) <= min(src_w, src_h), f"{check.uri} is upscaled"
        assert (check.height > check.width) == (src_h > src_w), f"{check.uri} lost the source orientation"
        assert check.pix_fmt == "yuv420p", f"{check.uri}: {check.pix_fmt}"
        assert check.profile == "High", f"{check.uri}: profile {check.profile}"
        assert check.bandwidth >= check.peak_bps, f"{check.uri}: BANDWIDTH {check.bandwidth} < peak {check.peak_bps:.0f}"
        assert abs(check.duration - source_duration) <= 0.5, f"{check.uri}: {check.duration} s vs source {source_duration} s"
        checks.append(check)
    first = checks[0].boundaries
    for check in checks[1:]:
        assert check.boundaries == first, f"segment boundaries differ: {check.uri} {check.boundaries} vs {first}"
    for group in media:
        audio = master_dir / group["URI"]
        errors = decode_errors(audio)
        assert errors == "", f"audio does not decode cleanly: {errors[:500]}"
    return checks
