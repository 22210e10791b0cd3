"""HLS packaging: fMP4 VOD media playlists and the master playlist.

Renditions are remuxed (``-c copy``) from the transcoder's MP4 outputs, so
segmenting costs no quality and almost no CPU. BANDWIDTH is the measured
peak segment bitrate, as Apple's authoring spec requires, not the target.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from include.media.ffmpeg import run_ffmpeg

SEGMENT_SECONDS = 6
PLAYLIST = "index.m3u8"
INIT = "init.mp4"
MASTER = "master.m3u8"
AUDIO_GROUP = "aac"
AAC_LC_CODEC = "mp4a.40.2"


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    size: int


@dataclass(frozen=True)
class MediaStats:
    peak_bps: int
    average_bps: int
    duration: float
    segments: tuple[Segment, ...]

    def to_dict(self) -> dict:
        return {"peak_bps": self.peak_bps, "average_bps": self.average_bps, "duration": self.duration,
                "segments": [asdict(s) for s in self.segments]}  # fmt: skip


def segment_command(source: Path, out_dir: Path) -> list[str]:
    """Remux one rendition MP4 into an fMP4 HLS VOD playlist in ``out_dir``."""
    return [
        "-protocol_whitelist", "file", "-f", "mov", "-i", f"file:{source}",
        "-map", "0", "-c", "copy", "-map_metadata", "-1",
        "-f", "hls", "-hls_time", str(SEGMENT_SECONDS), "-hls_playlist_type", "vod",
        "-hls_segment_type", "fmp4", "-hls_flags", "independent_segments",
        "-hls_fmp4_init_filename", INIT,
        "-hls_segment_filename", f"{out_dir}/seg_%05d.m4s",
        f"{out_dir}/{PLAYLIST}",
    ]  # fmt: skip


def segment_rendition(source: Path, out_dir: Path, timeout_s: float = 3600.0) -> MediaStats:
    out_dir.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(segment_command(source, out_dir), timeout_s=timeout_s)
    return measure_playlist(out_dir / PLAYLIST)


def parse_media_playlist(text: str) -> list[tuple[str, float]]:
    """(uri, duration) for each segment of a media playlist."""
    segments: list[tuple[str, float]] = []
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:"):].split(",", 1)[0])
        elif line and not line.startswith("#"):
            if duration is None:
                raise ValueError(f"segment {line!r} has no EXTINF")
            segments.append((line, duration))
            duration = None
    return segments


def measure_playlist(playlist: Path) -> MediaStats:
    """Peak and average bitrate from the real segment sizes on disk."""
    segments = tuple(
        Segment(uri, duration, (playlist.parent / uri).stat().st_size)
        for uri, duration in parse_media_playlist(playlist.read_text())
    )
    if not segments:
        raise ValueError(f"{playlist} lists no segments")
    total_bytes = sum(s.size for s in segments)
    total_duration = sum(s.duration for s in segments)
    # Every segment counts, the short last one too: players and validators
    # check BANDWIDTH against the worst segment, not a smoothed figure.
    peak = max(s.size * 8 / s.duration for s in segments if s.duration > 0)
    return MediaStats(
        peak_bps=int(math.ceil(peak)),
        average_bps=int(math.ceil(total_bytes * 8 / total_duration)),
        duration=total_duration,
        segments=segments,
    )


def avc_codec_string(init_segment: Path) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from the avcC box the encoder actually wrote."""
    data = init_segment.read_bytes()
    index = data.find(b"avcC")
    if index < 0 or len(data) < index + 8:
        raise ValueError(f"{init_segment} has no avcC box: not an H.264 init segment")
    profile, constraints, level = data[index + 5], data[index + 6], data[index + 7]
    return f"avc1.{profile:02x}{constraints:02x}{level:02x}"


@dataclass(frozen=True)
class Variant:
    uri: str
    width: int
    height: int
    fps: float
    video_codec: str
    stats: MediaStats


@dataclass(frozen=True)
class AudioRendition:
    uri: str
    channels: int
    stats: MediaStats


def _quote(value: str) -> str:
    if '"' in value or "\n" in value:
        raise ValueError(f"invalid playlist attribute {value!r}")
    return f'"{value}"'


def master_playlist(variants: list[Variant], audio: AudioRendition | None) -> str:
    """Master playlist: best variant first, audio shared through one group."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            f"#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID={_quote(AUDIO_GROUP)},NAME={_quote('Default')},"
            f"LANGUAGE={_quote('und')},DEFAULT=YES,AUTOSELECT=YES,CHANNELS={_quote(str(audio.channels))},"
            f"URI={_quote(audio.uri)}"
        )
    for variant in sorted(variants, key=lambda v: v.stats.peak_bps, reverse=True):
        peak, average = variant.stats.peak_bps, variant.stats.average_bps
        codecs = variant.video_codec
        if audio is not None:
            # A variant is played together with its audio, so both count.
            peak += audio.stats.peak_bps
            average += audio.stats.average_bps
            codecs += f",{AAC_LC_CODEC}"
        attrs = [
            f"BANDWIDTH={peak}",
            f"AVERAGE-BANDWIDTH={average}",
            f"RESOLUTION={variant.width}x{variant.height}",
            f"CODECS={_quote(codecs)}",
            f"FRAME-RATE={variant.fps:.3f}",
        ]
        if audio is not None:
            attrs.append(f"AUDIO={_quote(AUDIO_GROUP)}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(variant.uri)
    return "\n".join(lines) + "\n"


_ATTR = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


def parse_attributes(line: str) -> dict[str, str]:
    """Attribute list of an ``#EXT-X-...:`` tag (quotes stripped)."""
    _, _, rest = line.partition(":")
    return {key: value.strip('"') for key, value in _ATTR.findall(rest)}
