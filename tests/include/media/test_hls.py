"""HLS packaging on real files: a 14 s lavfi clip is transcoded with the
pipeline's own command (2 s GOP), segmented with ``segment_rendition`` and
measured from the segment files on disk. Nothing is mocked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from include.media import hls
from include.media.ffmpeg import run_ffmpeg
from include.media.hls import (
    AudioRendition,
    MediaStats,
    Segment,
    Variant,
    avc_codec_string,
    master_playlist,
    measure_playlist,
    parse_attributes,
    parse_media_playlist,
    segment_command,
    segment_rendition,
)
from include.media.ladder import plan_ladder
from include.media.probe import probe
from include.media.transcode import audio_settings, unit_command
from tests import media_fixtures as mf

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)

PLAYLIST_TEXT = """#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:6
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="init.mp4"
#EXTINF:6.000000,
seg_00000.m4s
#EXTINF:6.000000,
seg_00001.m4s
#EXTINF:2.000000,
seg_00002.m4s
#EXT-X-ENDLIST
"""


# --------------------------------------------------------------------------
# parsing and measuring
# --------------------------------------------------------------------------


def test_parse_media_playlist() -> None:
    assert parse_media_playlist(PLAYLIST_TEXT) == [
        ("seg_00000.m4s", 6.0),
        ("seg_00001.m4s", 6.0),
        ("seg_00002.m4s", 2.0),
    ]


def test_parse_media_playlist_with_titles_and_crlf() -> None:
    text = "#EXTM3U\r\n#EXTINF:4.004,first part\r\na.m4s\r\n#EXTINF:1.5,\r\n\r\nb.m4s\r\n#EXT-X-ENDLIST\r\n"
    assert parse_media_playlist(text) == [("a.m4s", 4.004), ("b.m4s", 1.5)]


def test_parse_media_playlist_rejects_segment_without_extinf() -> None:
    with pytest.raises(ValueError, match="EXTINF"):
        parse_media_playlist("#EXTM3U\n#EXTINF:6.0,\na.m4s\nb.m4s\n")


def test_measure_playlist_from_files_of_known_size(tmp_path: Path) -> None:
    sizes = {"seg_00000.m4s": 600_000, "seg_00001.m4s": 450_000, "seg_00002.m4s": 200_000}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"\0" * size)
    (tmp_path / "index.m3u8").write_text(PLAYLIST_TEXT)
    stats = measure_playlist(tmp_path / "index.m3u8")
    assert stats.segments == tuple(Segment(n, d, sizes[n]) for n, d in parse_media_playlist(PLAYLIST_TEXT))
    assert stats.duration == pytest.approx(14.0)
    # Peak is the short last segment: 200 kB in 2 s = 800 kb/s beats 600 kB in 6 s.
    assert stats.peak_bps == 800_000
    assert stats.average_bps == (600_000 + 450_000 + 200_000) * 8 // 14 + 1  # rounded up
    assert stats.to_dict()["segments"][0] == {"uri": "seg_00000.m4s", "duration": 6.0, "size": 600_000}


def test_measure_playlist_without_segments(tmp_path: Path) -> None:
    (tmp_path / "index.m3u8").write_text("#EXTM3U\n#EXT-X-ENDLIST\n")
    with pytest.raises(ValueError, match="no segments"):
        measure_playlist(tmp_path / "index.m3u8")


def test_segment_command_is_hardened_fmp4_vod(tmp_path: Path) -> None:
    cmd = segment_command(tmp_path / "in.mp4", tmp_path / "out")
    assert cmd[: cmd.index("-i")] == ["-protocol_whitelist", "file", "-f", "mov"]
    assert cmd[cmd.index("-i") + 1] == f"file:{tmp_path / 'in.mp4'}"
    assert cmd[cmd.index("-c") + 1] == "copy"
    assert cmd[cmd.index("-hls_segment_type") + 1] == "fmp4"
    assert cmd[cmd.index("-hls_playlist_type") + 1] == "vod"
    assert cmd[cmd.index("-hls_time") + 1] == "6"


def test_avc_codec_string_rejects_non_h264(tmp_path: Path) -> None:
    fake = tmp_path / "init.mp4"
    fake.write_bytes(b"\0\0\0\x18ftypiso6" + b"\0" * 64)
    with pytest.raises(ValueError, match="avcC"):
        avc_codec_string(fake)


# --------------------------------------------------------------------------
# master playlist
# --------------------------------------------------------------------------


def _stats(peak: int, average: int) -> MediaStats:
    return MediaStats(peak_bps=peak, average_bps=average, duration=14.0, segments=())


VARIANTS = [
    Variant("234p/index.m3u8", 416, 234, 25.0, "avc1.64000d", _stats(180_000, 150_000)),
    Variant("720p/index.m3u8", 1280, 720, 25.0, "avc1.64001f", _stats(3_400_000, 2_900_000)),
]
AUDIO = AudioRendition("audio/index.m3u8", 2, _stats(130_000, 128_000))


def _stream_infs(text: str) -> list[tuple[dict[str, str], str]]:
    lines = text.splitlines()
    return [(parse_attributes(line), lines[i + 1]) for i, line in enumerate(lines) if line.startswith("#EXT-X-STREAM-INF:")]


def test_master_playlist_with_audio() -> None:
    text = master_playlist(VARIANTS, AUDIO)
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    media = [parse_attributes(l) for l in lines if l.startswith("#EXT-X-MEDIA:")]
    assert media == [{"TYPE": "AUDIO", "GROUP-ID": "aac", "NAME": "Default", "LANGUAGE": "und", "DEFAULT": "YES",
                      "AUTOSELECT": "YES", "CHANNELS": "2", "URI": "audio/index.m3u8"}]  # fmt: skip
    variants = _stream_infs(text)
    assert [uri for _, uri in variants] == ["720p/index.m3u8", "234p/index.m3u8"]  # best first
    top, _ = variants[0]
    assert top["BANDWIDTH"] == str(3_400_000 + 130_000)  # video peak + audio peak
    assert top["AVERAGE-BANDWIDTH"] == str(2_900_000 + 128_000)
    assert top["RESOLUTION"] == "1280x720"
    assert top["CODECS"] == "avc1.64001f,mp4a.40.2"
    assert top["FRAME-RATE"] == "25.000"
    assert top["AUDIO"] == "aac"
    low, _ = variants[1]
    assert low["BANDWIDTH"] == str(180_000 + 130_000)
    assert low["RESOLUTION"] == "416x234"


def test_master_playlist_video_only() -> None:
    text = master_playlist(VARIANTS, None)
    assert "#EXT-X-MEDIA" not in text
    assert "AUDIO=" not in text
    assert "mp4a" not in text
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text
    top, uri = _stream_infs(text)[0]
    assert uri == "720p/index.m3u8"
    assert top["BANDWIDTH"] == "3400000" and top["AVERAGE-BANDWIDTH"] == "2900000"
    assert top["CODECS"] == "avc1.64001f"


def test_master_playlist_fractional_frame_rate_and_bad_uri() -> None:
    ntsc = Variant("v/index.m3u8", 640, 360, 30000 / 1001, "avc1.64001e", _stats(1, 1))
    assert "FRAME-RATE=29.970" in master_playlist([ntsc], None)
    evil = Variant('v"/index.m3u8', 640, 360, 25.0, 'avc1.64001e",X="y', _stats(1, 1))
    with pytest.raises(ValueError):
        master_playlist([evil], None)


# --------------------------------------------------------------------------
# real segmenting
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory):
    """A 14 s clip → 180p rendition + audio (pipeline command, 2 s GOP) → fMP4 HLS."""
    root = tmp_path_factory.mktemp("hls")
    source = mf.make_clip(root, width=320, height=180, seconds=14, fps=25, audio=True)
    result = probe(source)
    video = result.video
    renditions = plan_ladder(video.display_width, video.display_height, video.fps, None)
    assert len(renditions) == 1
    rendition = renditions[0]
    video_mp4, audio_mp4 = root / "video.mp4", root / "audio.mp4"
    run_ffmpeg(
        unit_command(
            source, result.demuxer, (video.display_width, video.display_height), renditions,
            {rendition.name: video_mp4},
            audio=audio_settings(result.audio.channels, result.audio.sample_rate, 96), audio_output=audio_mp4,
        ),  # fmt: skip
        timeout_s=120,
    )
    out = root / "out"
    video_stats = segment_rendition(video_mp4, out / rendition.name, timeout_s=60)
    audio_stats = segment_rendition(audio_mp4, out / "audio", timeout_s=60)
    return rendition, out, video_stats, audio_stats


@needs_ffmpeg
def test_media_playlists_are_fmp4_vod(packaged) -> None:
    rendition, out, _, _ = packaged
    for name in (rendition.name, "audio"):
        text = (out / name / hls.PLAYLIST).read_text()
        lines = text.splitlines()
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in lines
        assert f'#EXT-X-MAP:URI="{hls.INIT}"' in lines
        assert lines[-1] == "#EXT-X-ENDLIST"
        assert (out / name / hls.INIT).is_file()
    # ffmpeg 5.1 writes the tag into video playlists only; for the audio one the
    # master's EXT-X-INDEPENDENT-SEGMENTS applies to every media playlist
    # (RFC 8216 section 4.3.5.1), and every AAC frame is independent anyway.
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in (out / rendition.name / hls.PLAYLIST).read_text().splitlines()


@needs_ffmpeg
def test_video_playlist_target_duration_and_segments(packaged) -> None:
    rendition, out, stats, _ = packaged
    text = (out / rendition.name / hls.PLAYLIST).read_text()
    assert "#EXT-X-TARGETDURATION:6" in text.splitlines()
    durations = [round(d, 3) for _, d in parse_media_playlist(text)]
    assert durations == [6.0, 6.0, 2.0]  # cut on the 2 s keyframes
    assert stats.duration == pytest.approx(14.0, abs=0.05)
    for uri, _ in parse_media_playlist(text):
        assert uri.endswith(".m4s") and "/" not in uri


@needs_ffmpeg
def test_measured_bitrates_match_segment_files(packaged) -> None:
    rendition, out, stats, audio_stats = packaged
    assert stats == measure_playlist(out / rendition.name / hls.PLAYLIST)
    files = {p.name: p.stat().st_size for p in (out / rendition.name).glob("*.m4s")}
    assert {s.uri: s.size for s in stats.segments} == files
    assert stats.peak_bps >= stats.average_bps > 0
    expected_peak = max(s.size * 8 / s.duration for s in stats.segments)
    assert stats.peak_bps == pytest.approx(expected_peak, abs=1)
    # The encoder was asked for rendition.bitrate_k; the measurement is in that neighbourhood.
    assert stats.average_bps < rendition.maxrate_k * 1000 * 1.5
    assert 30_000 < audio_stats.average_bps < 200_000


@needs_ffmpeg
def test_avc_codec_string_from_real_init_segment(packaged) -> None:
    rendition, out, _, _ = packaged
    codec = avc_codec_string(out / rendition.name / hls.INIT)
    assert codec.startswith("avc1.64"), codec  # 0x64 = High profile
    assert len(codec) == len("avc1.64001e")
    int(codec[5:], 16)


@needs_ffmpeg
def test_master_playlist_from_real_renditions(packaged) -> None:
    rendition, out, stats, audio_stats = packaged
    variant = Variant(f"{rendition.name}/{hls.PLAYLIST}", rendition.width, rendition.height, rendition.fps,
                      avc_codec_string(out / rendition.name / hls.INIT), stats)  # fmt: skip
    text = master_playlist([variant], AudioRendition(f"audio/{hls.PLAYLIST}", 1, audio_stats))
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in text.splitlines()
    ((attrs, uri),) = _stream_infs(text)
    assert (out / uri).is_file()
    assert int(attrs["BANDWIDTH"]) == stats.peak_bps + audio_stats.peak_bps
    assert int(attrs["AVERAGE-BANDWIDTH"]) == stats.average_bps + audio_stats.average_bps
    assert attrs["RESOLUTION"] == "320x180"
    assert attrs["CODECS"].endswith(",mp4a.40.2") and attrs["CODECS"].startswith("avc1.64")
    assert attrs["FRAME-RATE"] == "25.000"
