"""Inspection of untrusted uploads: the gate every source passes before encoding.

A user-supplied file is hostile until proven otherwise. ffmpeg will happily
follow references inside a file (HLS/concat playlists, QuickTime data
references, nested protocols), so the container is identified here from its
magic bytes, checked against an allowlist, and every later ffmpeg/ffprobe run
is told that demuxer explicitly (``input_args``) instead of letting ffmpeg
guess. Limits (size, duration, dimensions, frame rate) are enforced before
anything is decoded, and a short decode of the head and tail catches files
whose header survived a truncated upload.

Everything raised for a bad file is ``InputRejected`` with a message the user
can act on; a missing ffprobe binary is an operational fault, not the user's,
so it raises ``TranscodeError`` (retried) instead.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from include.config import Settings, get_settings
from include.errors import InputRejected, TranscodeError, UnsupportedMedia

__all__ = [
    "ALLOWED_DEMUXERS",
    "AudioInfo",
    "ProbeResult",
    "VideoInfo",
    "ffmpeg_version",
    "ffprobe_version",
    "input_args",
    "probe",
    "sniff_container",
    "verify_decodable",
]

FFPROBE = "ffprobe"
FFMPEG = "ffmpeg"

ALLOWED_DEMUXERS: frozenset[str] = frozenset({"mov", "matroska", "mpegts", "avi"})

# Demuxer options that stop a container from pulling in other files. The mov
# defaults are already safe in ffmpeg 5.1, but stating them pins the behaviour
# against a future default change or a build with different defaults.
_DEMUXER_HARDENING: dict[str, tuple[str, ...]] = {
    "mov": ("-enable_drefs", "0", "-use_absolute_path", "0"),
    "matroska": (),
    "mpegts": (),
    "avi": (),
}

MAX_FPS = 240.0

_FORMATS = "MP4, MOV, MKV, WebM, MPEG-TS or AVI"
_SUPPORTED = f"upload {_FORMATS}"
_SNIFF_BYTES = 4096
_TS_PACKET = 188
# Camcorder AVCHD (.mts/.m2ts) prefixes each TS packet with a 4-byte timecode;
# ffmpeg's mpegts demuxer reads both layouts.
_M2TS_PACKET = 192
_MOV_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"}
# ISO BMFF brands used by still-image formats: the mov demuxer would open them,
# but there is no video to transcode and the user should be told so.
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    display_width: int
    display_height: int
    rotation: int  # 0/90/180/270, as ffprobe reports the display matrix
    fps: float
    fps_fraction: str
    pix_fmt: str
    bit_depth: int
    bit_rate: int | None
    profile: str | None


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    channels: int
    sample_rate: int
    bit_rate: int | None


@dataclass(frozen=True)
class ProbeResult:
    demuxer: str
    format_name: str
    duration_s: float
    size_bytes: int
    bit_rate: int | None
    video: VideoInfo
    audio: AudioInfo | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (stored with the job, passed via XCom)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        audio = data.get("audio")
        return cls(
            demuxer=data["demuxer"],
            format_name=data["format_name"],
            duration_s=float(data["duration_s"]),
            size_bytes=int(data["size_bytes"]),
            bit_rate=data.get("bit_rate"),
            video=VideoInfo(**data["video"]),
            audio=AudioInfo(**audio) if audio is not None else None,
        )


# --------------------------------------------------------------------------
# Container sniffing and safe input options
# --------------------------------------------------------------------------


def _reject_known_non_video(head: bytes) -> None:
    """Raise a specific message for common things that are not videos."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"#EXTM3U"):
        raise UnsupportedMedia(
            "The uploaded file is an HLS playlist, not a video file; "
            f"upload the video itself ({_FORMATS})."
        )
    if text.startswith((b"ffconcat", b"file ")):
        raise UnsupportedMedia(
            "The uploaded file is an ffmpeg concat script (a list of other files), "
            f"not a video file; upload the video itself ({_FORMATS})."
        )
    if head.startswith(b"%PDF"):
        raise UnsupportedMedia(f"The uploaded file is a PDF document, not a video; {_SUPPORTED}.")
    images = {
        b"\x89PNG\r\n\x1a\n": "a PNG image",
        b"\xff\xd8\xff": "a JPEG image",
        b"GIF87a": "a GIF image",
        b"GIF89a": "a GIF image",
    }
    for magic, what in images.items():
        if head.startswith(magic):
            raise UnsupportedMedia(f"The uploaded file is {what}, not a video; {_SUPPORTED}.")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        raise UnsupportedMedia(f"The uploaded file is a WebP image, not a video; {_SUPPORTED}.")
    if (head.startswith(b"RIFF") and head[8:12] == b"WAVE") or head.startswith(
        (b"ID3", b"fLaC", b"OggS")
    ):
        raise UnsupportedMedia(
            "The uploaded file is an audio-only or Ogg file, which is not supported; "
            f"{_SUPPORTED} with a video track."
        )
    if head.startswith((b"PK\x03\x04", b"Rar!", b"7z\xbc\xaf\x27\x1c", b"\x1f\x8b")):
        raise UnsupportedMedia(
            f"The uploaded file is a compressed archive; extract it and {_SUPPORTED}."
        )
    if text.startswith(b"<"):
        raise UnsupportedMedia(
            "The uploaded file is an XML/HTML document (for example a DASH manifest or "
            f"a web page), not a video; {_SUPPORTED}."
        )


def _looks_like_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        # The sniff window may cut a multi-byte character in half.
        try:
            decoded = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in decoded)


def _is_ts(head: bytes, stride: int, offset: int) -> bool:
    checked = [head[i] == 0x47 for i in range(offset, len(head), stride)][:8]
    # Three aligned sync bytes make a chance match on random data ~1 in 16M.
    return len(checked) >= 3 and all(checked)


def sniff_container(path: Path) -> str:
    """Identify the container from its magic bytes; return an allowlisted demuxer.

    ffmpeg's own probing is deliberately not used: it would also recognise
    playlists and scripts that make ffmpeg open other files.
    """
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head:
        raise UnsupportedMedia("The uploaded file is empty (0 bytes); upload the video file again.")

    if len(head) >= 8 and head[4:8] in _MOV_BOXES:
        box_size = int.from_bytes(head[0:4], "big")
        # 0 = box runs to end of file, 1 = 64-bit size follows; else >= header.
        if box_size in (0, 1) or box_size >= 8:
            if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
                raise UnsupportedMedia(
                    f"The uploaded file is a HEIF/AVIF image, not a video; {_SUPPORTED}."
                )
            return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if _is_ts(head, _TS_PACKET, 0) or _is_ts(head, _M2TS_PACKET, 4):
        return "mpegts"

    _reject_known_non_video(head)
    if _looks_like_text(head):
        raise UnsupportedMedia(f"The uploaded file is a text file, not a video; {_SUPPORTED}.")
    raise UnsupportedMedia(f"The uploaded file is an unsupported or unrecognised container; {_SUPPORTED}.")


def input_args(path: Path, demuxer: str) -> list[str]:
    """ffmpeg/ffprobe input options for an untrusted file; put them last before outputs.

    Options that must apply to the input (``-ss``, ``-threads``) go before
    these, since this list ends with ``-i``.
    """
    if demuxer not in ALLOWED_DEMUXERS:
        raise ValueError(f"demuxer {demuxer!r} is not in the allowlist {sorted(ALLOWED_DEMUXERS)}")
    return [
        "-protocol_whitelist", "file",
        "-f", demuxer,
        *_DEMUXER_HARDENING[demuxer],
        # "file:" stops a name like "concat:a|b" or "subfile,,..." being read as a protocol.
        "-i", f"file:{Path(path).resolve()}",
    ]


# --------------------------------------------------------------------------
# Running the tools
# --------------------------------------------------------------------------


def _run(cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess[bytes]:
    try:
        # subprocess.run kills the child when the timeout expires.
        return subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
    except FileNotFoundError as exc:
        raise TranscodeError(f"{cmd[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise InputRejected(
            f"The file took too long to {what} (over {timeout:g} s); it may be damaged "
            "or unusually complex. Re-export it with a standard encoder and upload it again."
        ) from exc


_LOG_PREFIX = re.compile(r"^\[[^\]]*@ ?0x[0-9a-fA-F]+\]\s*")


def _error_lines(stderr: bytes, path: Path) -> list[str]:
    """ffmpeg's error lines without internal noise or our server-side paths."""
    resolved = str(Path(path).resolve())
    lines = []
    for raw in stderr.decode("utf-8", errors="replace").splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        line = line.replace(f"file:{resolved}", "input").replace(resolved, "input")
        if line:
            lines.append(line)
    return lines


# Known ffprobe failures and what the user should do about them, checked in order.
_PROBE_HINTS: tuple[tuple[str, str], ...] = (
    ("moov atom not found",
     "the file is truncated or not a complete MP4 (its index, the 'moov' atom, is missing); "
     "upload the complete file or export it again"),
    ("EBML header parsing failed",
     "the MKV/WebM header is damaged; upload the complete file or export it again"),
    ("Invalid data found when processing input",
     "the file is damaged or is not a valid video file of its type; "
     "upload the complete file or export it again"),
)


def _probe_failure(stderr: bytes, path: Path) -> InputRejected:
    lines = _error_lines(stderr, path)
    for needle, hint in _PROBE_HINTS:
        for line in lines:
            if needle in line:
                return InputRejected(f"The file could not be read: {hint} (ffprobe: {line}).")
    detail = lines[0] if lines else "no details given"
    return InputRejected(
        f"The file could not be read (ffprobe: {detail}); "
        "upload the complete file or export it again."
    )


def _ffprobe_json(path: Path, demuxer: str, timeout: float) -> dict[str, Any]:
    cmd = [
        FFPROBE, "-hide_banner", "-v", "error",
        "-print_format", "json", "-show_format", "-show_streams",
        *input_args(path, demuxer),
    ]
    proc = _run(cmd, timeout, "inspect")
    if proc.returncode != 0:
        raise _probe_failure(proc.stderr, path)
    try:
        data = json.loads(proc.stdout.decode("utf-8", errors="replace") or "{}")
    except json.JSONDecodeError as exc:
        raise InputRejected(
            "The file could not be read: the inspection returned garbage; "
            "upload the complete file or export it again."
        ) from exc
    if not isinstance(data, dict):
        raise InputRejected("The file could not be read; upload the complete file or export it again.")
    return data


@lru_cache(maxsize=None)
def _tool_version(tool: str) -> str:
    try:
        out = subprocess.run(
            [tool, "-version"], stdin=subprocess.DEVNULL, capture_output=True,
            timeout=30, check=True,
        ).stdout.decode("utf-8", errors="replace")
    except FileNotFoundError as exc:
        raise TranscodeError(f"{tool} is not installed or not on PATH") from exc
    first = out.splitlines()[0] if out else ""
    match = re.match(rf"{re.escape(tool)} version (\S+)", first)
    return match.group(1) if match else first.strip()


def ffprobe_version() -> str:
    """e.g. "5.1.9-0+deb12u1" (recorded with results for reproducibility)."""
    return _tool_version(FFPROBE)


def ffmpeg_version() -> str:
    return _tool_version(FFMPEG)


# --------------------------------------------------------------------------
# Parsing ffprobe output
# --------------------------------------------------------------------------


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _rate(value: Any) -> Fraction | None:
    """A positive frame rate from ffprobe's "num/den" (0/0 means unknown)."""
    if not isinstance(value, str) or "/" not in value:
        return None
    num, _, den = value.partition("/")
    try:
        n, d = int(num), int(den)
    except ValueError:
        return None
    if n <= 0 or d <= 0:
        return None
    return Fraction(n, d)


def _rotation(stream: dict[str, Any]) -> int:
    degrees: float | None = None
    for side in stream.get("side_data_list") or []:
        if isinstance(side, dict) and "rotation" in side:
            degrees = _float_or_none(side["rotation"])
            if degrees is not None:
                break
    if degrees is None:
        degrees = _float_or_none((stream.get("tags") or {}).get("rotate"))
    if degrees is None:
        return 0
    # Snap to a right angle: the encoder relies on ffmpeg's autorotate, and only
    # quarter turns change which way round the picture is.
    return int(round(degrees / 90.0)) * 90 % 360


_PIX_DEPTH = (
    re.compile(r"(?:yuva?4[0-4][0-4]p|gbra?p|gray|ya)(\d{1,2})(?:le|be)"),
    re.compile(r"p[0-4](\d\d)(?:le|be)?"),  # semi-planar: p010le, p016le, p210le
)


def _bit_depth(stream: dict[str, Any], pix_fmt: str) -> int:
    raw = _int_or_none(stream.get("bits_per_raw_sample"))
    if raw:
        return raw
    for pattern in _PIX_DEPTH:
        match = pattern.fullmatch(pix_fmt)
        if match:
            return int(match.group(1))
    return 8


def _is_real_video(stream: dict[str, Any]) -> bool:
    if stream.get("codec_type") != "video":
        return False
    # Cover art and thumbnails are video streams of one still picture.
    disposition = stream.get("disposition") or {}
    return not disposition.get("attached_pic") and not disposition.get("timed_thumbnails")


def _parse_video(stream: dict[str, Any]) -> VideoInfo:
    codec = stream.get("codec_name")
    if not codec:
        raise InputRejected(
            "The video uses a codec this service cannot decode; "
            "re-export it as H.264, HEVC, VP9 or AV1 and upload it again."
        )
    width = int(stream.get("width") or 0)
    height = int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        raise InputRejected(
            f"The video stream has no picture size ({width}x{height}); the file is damaged "
            "or uses an unsupported codec. Export it again and upload the new file."
        )
    rate = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if rate is None:
        raise InputRejected(
            "The video's frame rate could not be determined; the file is damaged or unusual. "
            "Re-export it at a standard frame rate (for example 25 or 30 fps)."
        )
    rotation = _rotation(stream)
    swap = rotation in (90, 270)
    pix_fmt = str(stream.get("pix_fmt") or "unknown")
    profile = stream.get("profile")
    return VideoInfo(
        codec=str(codec),
        width=width,
        height=height,
        display_width=height if swap else width,
        display_height=width if swap else height,
        rotation=rotation,
        fps=float(rate),
        fps_fraction=f"{rate.numerator}/{rate.denominator}",
        pix_fmt=pix_fmt,
        bit_depth=_bit_depth(stream, pix_fmt),
        bit_rate=_int_or_none(stream.get("bit_rate")),
        profile=str(profile) if profile and str(profile).lower() != "unknown" else None,
    )


def _parse_audio(stream: dict[str, Any]) -> AudioInfo:
    return AudioInfo(
        codec=str(stream.get("codec_name") or "unknown"),
        channels=int(stream.get("channels") or 0),
        sample_rate=int(_int_or_none(stream.get("sample_rate")) or 0),
        bit_rate=_int_or_none(stream.get("bit_rate")),
    )


def _parse_probe(data: dict[str, Any], demuxer: str, size_bytes: int) -> ProbeResult:
    streams = [s for s in data.get("streams") or [] if isinstance(s, dict)]
    fmt = data.get("format") or {}
    video_stream = next((s for s in streams if _is_real_video(s)), None)
    if video_stream is None:
        raise InputRejected(
            "The file has no video track (it may be audio only or a still picture); "
            "upload a file that contains video."
        )
    video = _parse_video(video_stream)
    audio_stream = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _float_or_none(fmt.get("duration")) or _float_or_none(video_stream.get("duration"))
    if not duration or duration <= 0:
        raise InputRejected(
            "The file reports no duration (zero or unknown length); it is damaged or incomplete. "
            "Upload the complete file or export it again."
        )
    return ProbeResult(
        demuxer=demuxer,
        format_name=str(fmt.get("format_name") or demuxer),
        duration_s=duration,
        size_bytes=size_bytes,
        bit_rate=_int_or_none(fmt.get("bit_rate")),
        video=video,
        audio=_parse_audio(audio_stream) if audio_stream is not None else None,
    )


# --------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------


def _human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover - loop always returns


def _human_duration(seconds: float) -> str:
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:g} s"


def _check_size(size: int, settings: Settings) -> None:
    if size > settings.max_source_bytes:
        raise InputRejected(
            f"The file is {_human_bytes(size)}; the limit is {_human_bytes(settings.max_source_bytes)}. "
            "Compress it or trim it and upload it again."
        )


def _check_limits(result: ProbeResult, settings: Settings) -> None:
    if result.duration_s > settings.max_duration_s:
        raise InputRejected(
            f"The video is {_human_duration(result.duration_s)} long; the limit is "
            f"{_human_duration(settings.max_duration_s)}. Trim it or split it and upload the parts."
        )
    v = result.video
    # Portrait sources are as legitimate as landscape: compare long side with
    # long side and short with short, so the limit holds in either orientation.
    long_limit = max(settings.max_width, settings.max_height)
    short_limit = min(settings.max_width, settings.max_height)
    if max(v.width, v.height) > long_limit or min(v.width, v.height) > short_limit:
        raise InputRejected(
            f"The video is {v.width}x{v.height}; the largest supported size is "
            f"{settings.max_width}x{settings.max_height} (either orientation). "
            "Scale it down and upload it again."
        )
    if v.fps > MAX_FPS:
        raise InputRejected(
            f"The video's frame rate ({v.fps:g} fps) is implausible; the limit is {MAX_FPS:g} fps. "
            "Re-export it at a standard frame rate (for example 25, 30 or 60 fps)."
        )


# --------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------


def verify_decodable(
    path: Path,
    result: ProbeResult,
    settings: Settings | None = None,
    seconds: float = 1.0,
) -> None:
    """Decode the first ``seconds`` and read every packet of the tail; reject on any error.

    A truncated upload often keeps an intact header (MP4 with the index in
    front), so ffprobe alone would accept it and the encode would fail hours
    later. The head is decoded (a broken bitstream shows at once); the tail
    is only demuxed, which is enough to find packets missing past the end of
    the file and costs no decoding of a long GOP before the seek point.
    """
    settings = settings or get_settings()
    checks = [([], ["-map", "0:V:0", "-t", f"{seconds:g}"])]
    if result.duration_s > seconds:
        tail_start = max(0.0, result.duration_s - max(seconds, 2.0))
        checks.append((["-ss", f"{tail_start:.3f}"], ["-map", "0", "-c", "copy"]))
    for before_input, output in checks:
        cmd = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-xerror", "-threads", "2", *before_input,
               # "V" skips cover art, which the probe ignored too.
               *input_args(path, result.demuxer), *output, "-f", "null", "-"]  # fmt: skip
        proc = _run(cmd, settings.ffprobe_timeout_s, "decode")
        lines = _error_lines(proc.stderr, path)
        if proc.returncode != 0 or lines:
            detail = lines[0].rstrip(".") if lines else f"decoder exited with status {proc.returncode}"
            raise InputRejected(
                f"the file is corrupt or truncated: {detail}. "
                "Upload the complete file or export it again."
            )


def probe(path: Path, settings: Settings | None = None, verify: bool = True) -> ProbeResult:
    """Inspect an untrusted upload; return its facts or raise ``InputRejected``.

    Order matters: cheap checks that need no parser (size, magic bytes) run
    first, ffprobe only ever sees an allowlisted container with its demuxer
    forced, and limits are applied before any decoding.
    """
    settings = settings or get_settings()
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        # Our download step failed, not the user: let the orchestrator retry.
        raise TranscodeError(f"source file {path} does not exist") from exc
    _check_size(size, settings)
    demuxer = sniff_container(path)
    data = _ffprobe_json(path, demuxer, settings.ffprobe_timeout_s)
    result = _parse_probe(data, demuxer, size)
    _check_limits(result, settings)
    if verify:
        verify_decodable(path, result, settings)
    return result
