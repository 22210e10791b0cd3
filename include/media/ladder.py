"""Adaptive-bitrate ladder planning after Apple's HLS authoring specification.

Tiers are named by their short side ("720p" is 1280x720 landscape or
720x1280 portrait) so a phone video keeps its orientation all the way down.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

# Apple HLS authoring spec, H.264 column (kb/s at <= 30 fps). 432p and 360p use
# the spec's lower entries for that size.
DEFAULT_TIERS: tuple[tuple[int, int], ...] = (
    (1080, 6000),
    (720, 3000),
    (540, 2000),
    (432, 1100),
    (360, 700),
    (234, 145),
)

# A rendition whose bitrate ends up this close to the one above it adds a
# switch point with no quality difference, so it is dropped.
REDUNDANT_RATIO = 0.85
MIN_VIDEO_KBPS = 64
GOP_SECONDS = 2.0


@dataclass(frozen=True)
class Rendition:
    name: str
    width: int
    height: int
    bitrate_k: int
    maxrate_k: int
    bufsize_k: int
    fps: float
    gop_frames: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Rendition":
        return cls(**data)


def parse_tiers(ladder_json: str | None) -> tuple[tuple[int, int], ...]:
    """Tiers from ``TRANSCODE_LADDER`` (``[[1080, 6000], [720, 3000], ...]``)."""
    if not ladder_json:
        return DEFAULT_TIERS
    try:
        raw = json.loads(ladder_json)
        tiers = tuple((int(short), int(kbps)) for short, kbps in raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            "TRANSCODE_LADDER must be a JSON list of [short_side, kbps] pairs, "
            f"e.g. [[720, 3000], [360, 700]]: {exc}"
        ) from exc
    if not tiers or any(short < 2 or kbps < 1 for short, kbps in tiers):
        raise ValueError("TRANSCODE_LADDER needs at least one tier with positive sizes")
    return tuple(sorted(tiers, reverse=True))


def _even(value: float) -> int:
    return max(2, int(round(value / 2.0)) * 2)


def fps_factor(fps: float) -> float:
    """Bitrate multiplier for high frame rates (Apple's 60 fps rows are ~1.5x)."""
    if fps <= 31:
        return 1.0
    return min(2.0, 1.0 + 0.5 * (fps - 30.0) / 30.0)


def gop_frames(fps: float) -> int:
    return max(1, int(round(fps * GOP_SECONDS)))


def plan_ladder(
    display_width: int,
    display_height: int,
    fps: float,
    source_video_kbps: int | None,
    tiers: tuple[tuple[int, int], ...] = DEFAULT_TIERS,
) -> list[Rendition]:
    """Renditions for a source of the given *display* size, best first.

    Never upscales; keeps the display aspect; even dimensions; bitrates scaled
    for frame rate and capped near the source's own bitrate (scaled by area)
    so a small source is not inflated.
    """
    if display_width < 2 or display_height < 2:
        raise ValueError("source dimensions must be at least 2x2")
    portrait = display_height > display_width
    source_short = min(display_width, display_height)
    aspect = max(display_width, display_height) / source_short
    source_pixels = display_width * display_height

    chosen = [(short, kbps) for short, kbps in tiers if short <= source_short]
    if not chosen:
        # Smaller than the lowest tier: one rendition at the source size.
        lowest_kbps = tiers[-1][1]
        chosen = [(source_short, max(MIN_VIDEO_KBPS, int(lowest_kbps * source_short / tiers[-1][0])))]

    renditions: list[Rendition] = []
    for short, kbps in chosen:
        short_even = _even(short) if short < source_short else source_short - source_short % 2
        long_even = _even(short_even * aspect)
        if long_even > max(display_width, display_height):
            long_even = max(display_width, display_height) // 2 * 2
        width, height = (short_even, long_even) if portrait else (long_even, short_even)
        bitrate = kbps * fps_factor(fps)
        if source_video_kbps:
            area_ratio = (width * height) / source_pixels
            cap = source_video_kbps * 1.1 * math.pow(area_ratio, 0.75)
            bitrate = min(bitrate, cap)
        bitrate_k = max(MIN_VIDEO_KBPS, int(round(bitrate)))
        if renditions and bitrate_k >= renditions[-1].bitrate_k * REDUNDANT_RATIO:
            continue
        renditions.append(
            Rendition(
                name=f"{short_even}p",
                width=width,
                height=height,
                bitrate_k=bitrate_k,
                maxrate_k=int(round(bitrate_k * 1.1)),
                bufsize_k=bitrate_k * 2,
                fps=fps,
                gop_frames=gop_frames(fps),
            )
        )
    return renditions
