"""Poster frame: one JPEG from a representative moment of the source."""

from __future__ import annotations

from pathlib import Path

from include.media.ffmpeg import run_ffmpeg
from include.media.probe import input_args

POSTER_MAX_WIDTH = 1280


def poster_time(duration_s: float) -> float:
    """10 % in (past black intro frames), never past the last second."""
    return max(0.0, min(duration_s * 0.1, duration_s - 1.0))


def poster_command(source: Path, demuxer: str, duration_s: float, output: Path, display_width: int) -> list[str]:
    width = min(POSTER_MAX_WIDTH, display_width) // 2 * 2
    return [
        "-ss", f"{poster_time(duration_s):.3f}", *input_args(source, demuxer),
        "-map", "0:V:0", "-frames:v", "1", "-vf", f"scale={width}:-2,setsar=1", "-q:v", "3",
        "-map_metadata", "-1", "-f", "image2", "-update", "1", f"file:{output}",
    ]  # fmt: skip


def make_poster(source: Path, demuxer: str, duration_s: float, output: Path, display_width: int, timeout_s: float = 120.0) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(poster_command(source, demuxer, duration_s, output, display_width), timeout_s=timeout_s)
    return output
