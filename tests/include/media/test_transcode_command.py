"""Encode-unit command lines, then the real command on real clips.

The first half only builds argument lists. The hardware-encoder cases are
command building only: this machine has no GPU, so nothing here runs
h264_nvenc/qsv/vaapi. The second half runs the real ffmpeg command produced
by ``unit_command`` on clips generated with lavfi and checks the outputs with
ffprobe and a full decode.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from include.media.encoders import CPU_ENCODER, spec_for
from include.media.ffmpeg import run_ffmpeg
from include.media.ladder import GOP_SECONDS, plan_ladder
from include.media.probe import probe
from include.media.transcode import AudioSettings, audio_settings, filter_graph, unit_command, video_encoder_args
from tests import media_fixtures as mf

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="ffmpeg/ffprobe not installed"
)

SOURCE = Path("/media/in/source.mp4")


def _outputs(renditions, root: Path = Path("/media/out")) -> dict[str, Path]:
    return {r.name: root / f"{r.name}.mp4" for r in renditions}


def _per_output(args: list[str]) -> list[list[str]]:
    """Split an argument list into the options of each output (ending at its file: URL)."""
    start = args.index("-filter_complex") + 2 if "-filter_complex" in args else args.index("-i") + 2
    chunks, current = [], []
    for arg in args[start:]:
        current.append(arg)
        if arg.startswith("file:"):
            chunks.append(current)
            current = []
    assert not current, f"trailing options after the last output: {current}"
    return chunks


def _value(chunk: list[str], option: str) -> str:
    assert chunk.count(option) == 1, (option, chunk)
    return chunk[chunk.index(option) + 1]


@pytest.fixture
def three_unit():
    renditions = plan_ladder(1280, 720, 25.0, None)[:3]  # 720p (source size), 540p, 432p
    audio = AudioSettings(bitrate_k=128, channels=2, sample_rate=48000)
    args = unit_command(
        SOURCE, "mov", (1280, 720), renditions, _outputs(renditions),
        audio=audio, audio_output=Path("/media/out/audio.mp4"),
    )  # fmt: skip
    return renditions, args


def test_command_is_a_hardened_argument_list(three_unit) -> None:
    _, args = three_unit
    assert isinstance(args, list) and all(isinstance(a, str) for a in args)
    i = args.index("-i")
    assert args.count("-i") == 1
    before = args[:i]
    assert before[before.index("-protocol_whitelist") + 1] == "file"
    assert before[before.index("-f") + 1] == "mov"
    assert args[i + 1] == f"file:{SOURCE}"
    # Every output is a file: URL too, so an output name can never be read as a protocol.
    assert all(chunk[-1].startswith("file:") for chunk in _per_output(args))


def test_one_split_with_one_branch_per_rendition(three_unit) -> None:
    renditions, args = three_unit
    assert args.count("-filter_complex") == 1
    graph = args[args.index("-filter_complex") + 1]
    assert graph.count("split=") == 1
    assert graph.startswith("[0:V:0]split=3[s0][s1][s2];")
    for index in range(3):
        assert f"[v{index}]" in graph
        assert args.count(f"[v{index}]") == 1  # mapped once
    # Only one decode: one input, one split.
    assert args.count("-i") == 1


def test_no_scale_for_rendition_at_source_size(three_unit) -> None:
    renditions, args = three_unit
    graph = args[args.index("-filter_complex") + 1]
    branches = {part[part.rindex("[") :]: part for part in graph.split(";")[1:]}
    assert set(branches) == {"[v0]", "[v1]", "[v2]"}
    assert "scale" not in branches["[v0]"]  # 1280x720 == source
    assert "scale=w=960:h=540" in branches["[v1]"]
    assert "scale=w=768:h=432" in branches["[v2]"]
    for chain in branches.values():
        assert "setsar=1" in chain and "format=yuv420p" in chain


def test_every_video_output_has_aligned_gop_and_compatible_profile(three_unit) -> None:
    renditions, args = three_unit
    chunks = _per_output(args)
    assert len(chunks) == 4  # 3 renditions + audio
    for rendition, chunk in zip(renditions, chunks[:3]):
        gop = str(rendition.gop_frames)
        assert gop == "50"
        assert _value(chunk, "-map") == f"[v{renditions.index(rendition)}]"
        assert _value(chunk, "-c:v") == "libx264"
        assert _value(chunk, "-g") == gop
        assert _value(chunk, "-keyint_min") == gop
        assert _value(chunk, "-sc_threshold") == "0"
        assert _value(chunk, "-force_key_frames") == f"expr:gte(t,n_forced*{GOP_SECONDS:g})"
        assert _value(chunk, "-pix_fmt") == "yuv420p"
        assert _value(chunk, "-profile:v") == "high"
        assert _value(chunk, "-map_metadata") == "-1"
        assert _value(chunk, "-b:v") == f"{rendition.bitrate_k}k"
        assert _value(chunk, "-maxrate") == f"{rendition.maxrate_k}k"
        assert _value(chunk, "-bufsize") == f"{rendition.bufsize_k}k"
        assert "-an" in chunk
        assert chunk[-1] == f"file:/media/out/{rendition.name}.mp4"


def test_audio_is_encoded_once(three_unit) -> None:
    _, args = three_unit
    assert args.count("-c:a") == 1
    assert args[args.index("-c:a") + 1] == "aac"
    audio = _per_output(args)[-1]
    assert _value(audio, "-map") == "0:a:0"
    assert "-vn" in audio
    assert _value(audio, "-b:a") == "128k"
    assert _value(audio, "-ac") == "2"
    assert _value(audio, "-ar") == "48000"
    assert _value(audio, "-map_metadata") == "-1"
    assert audio[-1] == "file:/media/out/audio.mp4"


def test_single_rendition_unit_has_no_split() -> None:
    renditions = plan_ladder(640, 360, 25.0, None)[:1]
    args = unit_command(SOURCE, "matroska", (640, 360), renditions, _outputs(renditions))
    graph = args[args.index("-filter_complex") + 1]
    assert "split" not in graph and graph.startswith("[0:V:0]null[s0]")
    assert "-c:a" not in args


def test_audio_only_unit_has_no_filter_graph() -> None:
    args = unit_command(
        SOURCE, "mov", (640, 360), [], {},
        audio=AudioSettings(128, 2, 48000), audio_output=Path("/media/out/audio.mp4"),
    )  # fmt: skip
    assert "-filter_complex" not in args
    assert args.count("-c:a") == 1


def test_unit_command_refuses_empty_or_unsafe_units() -> None:
    with pytest.raises(ValueError):
        unit_command(SOURCE, "mov", (640, 360), [], {})
    with pytest.raises(ValueError):
        unit_command(SOURCE, "mov", (640, 360), [], {}, audio_output=Path("/media/out/audio.mp4"))
    renditions = plan_ladder(640, 360, 25.0, None)
    with pytest.raises(ValueError, match="allowlist"):
        unit_command(SOURCE, "hls", (640, 360), renditions, _outputs(renditions))


def test_audio_settings_normalise_channels_and_rates() -> None:
    assert audio_settings(6, 44100, 128) == AudioSettings(128, 2, 44100)
    assert audio_settings(1, 22050, 128) == AudioSettings(64, 1, 48000)
    assert audio_settings(2, 96000, 160) == AudioSettings(160, 2, 48000)


# --------------------------------------------------------------------------
# Hardware encoders: command building only (no GPU on this machine).
# --------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["h264_nvenc", "h264_qsv", "h264_vaapi"])
def test_hardware_encoder_arguments(encoder: str) -> None:
    """Command building only — label: no GPU here, so these commands are never run."""
    renditions = plan_ladder(1920, 1080, 25.0, None)[:2]
    args = unit_command(SOURCE, "mov", (1920, 1080), renditions, _outputs(renditions), encoder=encoder)
    spec = spec_for(encoder)
    assert spec.is_gpu
    i = args.index("-i")
    # Device initialisation is global and must come before the input.
    assert args[: len(spec.hw_init)] == list(spec.hw_init)
    assert args.index("-protocol_whitelist") < i
    graph = args[args.index("-filter_complex") + 1]
    if spec.upload_filter:
        assert graph.count(spec.upload_filter) == len(renditions)
    for rendition, chunk in zip(renditions, _per_output(args)):
        assert _value(chunk, "-c:v") == encoder
        assert _value(chunk, "-g") == str(rendition.gop_frames)
        assert _value(chunk, "-profile:v") == "high"
        assert _value(chunk, "-force_key_frames").startswith("expr:gte(t,n_forced*")
        assert _value(chunk, "-b:v") == f"{rendition.bitrate_k}k"
        assert "-preset" not in chunk or _value(chunk, "-preset") != "veryfast"  # x264 presets mean nothing here
    if encoder == "h264_nvenc":
        chunk = _per_output(args)[0]
        assert _value(chunk, "-strict_gop") == "1"
        assert _value(chunk, "-no-scenecut") == "1"
        assert _value(chunk, "-forced-idr") == "1"
        assert _value(chunk, "-pix_fmt") == "yuv420p"
        assert spec.hw_init == ()
    elif encoder == "h264_qsv":
        assert list(spec.hw_init) == ["-init_hw_device", "qsv=hw", "-filter_hw_device", "hw"]
        assert "hwupload" in graph
    else:
        assert spec.hw_init[0] == "-vaapi_device"
        assert "hwupload" in graph


def test_unknown_encoder_is_refused() -> None:
    rendition = plan_ladder(640, 360, 25.0, None)[0]
    with pytest.raises(ValueError):
        video_encoder_args(rendition, "h264_magic", "veryfast")
    with pytest.raises(ValueError):
        filter_graph([rendition], (640, 360), "h264_magic")


# --------------------------------------------------------------------------
# The real command on real clips
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transcode-media")


def _ffprobe_json(path: Path, *args: str) -> dict:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", *args, str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(proc.stdout)


def _keyframe_times(path: Path) -> list[float]:
    data = _ffprobe_json(path, "-select_streams", "v:0", "-skip_frame", "nokey", "-show_entries", "frame=pts_time")
    return [round(float(f["pts_time"]), 3) for f in data["frames"]]


def _encode(source: Path, out_dir: Path):
    result = probe(source)
    video = result.video
    renditions = plan_ladder(video.display_width, video.display_height, video.fps, None)
    outputs = _outputs(renditions, out_dir)
    audio_out = out_dir / "audio.mp4" if result.audio else None
    audio = audio_settings(result.audio.channels, result.audio.sample_rate, 96) if result.audio else None
    args = unit_command(
        source, result.demuxer, (video.display_width, video.display_height), renditions, outputs,
        encoder=CPU_ENCODER, preset="veryfast", audio=audio, audio_output=audio_out,
    )  # fmt: skip
    run_ffmpeg(args, duration_s=result.duration_s, timeout_s=120)
    return renditions, outputs, audio_out


@pytest.fixture(scope="module")
def landscape(media_dir: Path):
    source = mf.make_clip(media_dir, width=640, height=360, seconds=6, fps=25, audio=True)
    out = media_dir / "landscape"
    out.mkdir()
    return _encode(source, out)


@needs_ffmpeg
def test_real_encode_plans_two_renditions_and_audio(landscape) -> None:
    renditions, outputs, audio_out = landscape
    assert [(r.width, r.height) for r in renditions] == [(640, 360), (416, 234)]
    assert all(path.stat().st_size > 0 for path in outputs.values())
    assert audio_out is not None and audio_out.stat().st_size > 0


@needs_ffmpeg
def test_real_outputs_decode_without_errors(landscape) -> None:
    _, outputs, audio_out = landscape
    for path in [*outputs.values(), audio_out]:
        proc = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0 and proc.stderr == "", (path, proc.stderr)


@needs_ffmpeg
def test_real_outputs_are_8bit_high_profile_at_planned_size(landscape) -> None:
    renditions, outputs, audio_out = landscape
    for rendition in renditions:
        streams = _ffprobe_json(outputs[rendition.name], "-show_streams")["streams"]
        assert [s["codec_type"] for s in streams] == ["video"], "video outputs carry no audio"
        video = streams[0]
        assert video["codec_name"] == "h264"
        assert video["pix_fmt"] == "yuv420p"
        assert video["profile"] == "High"
        assert (video["width"], video["height"]) == (rendition.width, rendition.height)
    audio_streams = _ffprobe_json(audio_out, "-show_streams")["streams"]
    assert [(s["codec_type"], s["codec_name"], s.get("profile")) for s in audio_streams] == [("audio", "aac", "LC")]


@needs_ffmpeg
def test_real_outputs_have_identical_keyframes_every_two_seconds(landscape) -> None:
    renditions, outputs, _ = landscape
    times = {name: _keyframe_times(path) for name, path in outputs.items()}
    reference = times[renditions[0].name]
    assert reference == [0.0, 2.0, 4.0]
    for name, keyframes in times.items():
        assert keyframes == reference, (name, keyframes)


@needs_ffmpeg
def test_portrait_source_yields_portrait_outputs(media_dir: Path) -> None:
    """A phone clip stored 640x360 with a 90° display matrix must come out 360x640."""
    source = mf.make_clip(media_dir, width=640, height=360, seconds=2, fps=25, audio=False, rotate=90)
    out = media_dir / "portrait"
    out.mkdir()
    renditions, outputs, audio_out = _encode(source, out)
    assert audio_out is None
    assert [(r.width, r.height) for r in renditions] == [(360, 640), (234, 416)]
    for rendition in renditions:
        video = _ffprobe_json(outputs[rendition.name], "-show_streams")["streams"][0]
        assert (video["width"], video["height"]) == (rendition.width, rendition.height)
        assert video["width"] < video["height"]
        # Pixels are upright: no display matrix left to turn them again.
        rotations = [sd.get("rotation", 0) for sd in video.get("side_data_list", [])]
        assert all(r in (0, None) for r in rotations), rotations
        assert "rotate" not in (video.get("tags") or {})
