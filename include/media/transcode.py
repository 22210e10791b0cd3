"""ffmpeg command lines for one encode unit: one decode, several renditions.

A unit decodes the source once and feeds every rendition it carries through
``split``; decoding a 1080p H.264 source costs about a fifth of encoding it,
so decoding it once per rendition would make a six-rung ladder ~50 % slower
(measured; see docs/architecture.md). The plan decides how renditions are
packed into units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from include.media.encoders import CPU_ENCODER, spec_for
from include.media.ladder import GOP_SECONDS, Rendition
from include.media.probe import input_args

AUDIO_SAMPLE_RATES = (44100, 48000)


@dataclass(frozen=True)
class AudioSettings:
    bitrate_k: int
    channels: int
    sample_rate: int


def audio_settings(source_channels: int, source_rate: int, bitrate_k: int) -> AudioSettings:
    """Stereo AAC-LC (mono stays mono) at 44.1/48 kHz: what every player decodes."""
    channels = 1 if source_channels == 1 else 2
    rate = source_rate if source_rate in AUDIO_SAMPLE_RATES else 48000
    return AudioSettings(bitrate_k=bitrate_k if channels == 2 else max(64, bitrate_k // 2), channels=channels, sample_rate=rate)


def video_encoder_args(rendition: Rendition, encoder: str, preset: str) -> list[str]:
    """Rate control and GOP for one rendition; identical GOPs keep segments aligned."""
    gop = str(rendition.gop_frames)
    rate = ["-b:v", f"{rendition.bitrate_k}k", "-maxrate", f"{rendition.maxrate_k}k", "-bufsize", f"{rendition.bufsize_k}k"]
    # Keyframes forced on the clock as well as by frame count, so variable
    # frame-rate sources still cut every rendition at the same instants.
    keyframes = ["-force_key_frames", f"expr:gte(t,n_forced*{GOP_SECONDS:g})"]
    if encoder == CPU_ENCODER:
        return [
            "-c:v", "libx264", "-preset", preset, "-profile:v", "high", "-pix_fmt", "yuv420p",
            *rate, "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", *keyframes,
        ]  # fmt: skip
    if encoder == "h264_nvenc":
        return [
            "-c:v", "h264_nvenc", "-preset", "p5", "-tune", "hq", "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-rc", "vbr", *rate, "-g", gop, "-strict_gop", "1", "-no-scenecut", "1", "-forced-idr", "1", *keyframes,
        ]  # fmt: skip
    if encoder in ("h264_qsv", "h264_vaapi"):
        return ["-c:v", encoder, "-profile:v", "high", *rate, "-g", gop, "-idr_interval", "0", *keyframes]
    raise ValueError(f"unknown encoder {encoder!r}")


def filter_graph(renditions: list[Rendition], source_size: tuple[int, int], encoder: str) -> str:
    """``split`` once, then scale each branch to its rendition (display orientation)."""
    upload = spec_for(encoder).upload_filter
    chains = []
    for index, r in enumerate(renditions):
        steps = []
        if (r.width, r.height) != source_size:
            steps.append(f"scale=w={r.width}:h={r.height}:flags=bicubic")
        steps += ["setsar=1", "format=yuv420p"]
        if upload:
            steps.append(upload)
        chains.append(f"[s{index}]{','.join(steps)}[v{index}]")
    if len(renditions) == 1:
        head = "[0:V:0]null[s0]"
    else:
        head = f"[0:V:0]split={len(renditions)}" + "".join(f"[s{i}]" for i in range(len(renditions)))
    return ";".join([head, *chains])


def unit_command(
    source: Path,
    demuxer: str,
    source_size: tuple[int, int],
    renditions: list[Rendition],
    outputs: dict[str, Path],
    *,
    encoder: str = CPU_ENCODER,
    preset: str = "veryfast",
    audio: AudioSettings | None = None,
    audio_output: Path | None = None,
) -> list[str]:
    """Arguments for ``run_ffmpeg``: decode once, write one MP4 per rendition (+ audio)."""
    if not renditions and audio_output is None:
        raise ValueError("an encode unit needs at least one rendition or the audio")
    args = [*spec_for(encoder).hw_init, *input_args(source, demuxer)]
    if renditions:
        args += ["-filter_complex", filter_graph(renditions, source_size, encoder)]
    for index, rendition in enumerate(renditions):
        args += [
            "-map", f"[v{index}]", *video_encoder_args(rendition, encoder, preset),
            "-an", "-map_metadata", "-1", "-map_chapters", "-1", "-f", "mp4", f"file:{outputs[rendition.name]}",
        ]  # fmt: skip
    if audio_output is not None:
        if audio is None:
            raise ValueError("audio settings are required with an audio output")
        args += [
            "-map", "0:a:0", "-vn", "-c:a", "aac", "-b:a", f"{audio.bitrate_k}k",
            "-ac", str(audio.channels), "-ar", str(audio.sample_rate),
            "-map_metadata", "-1", "-map_chapters", "-1", "-f", "mp4", f"file:{audio_output}",
        ]  # fmt: skip
    return args
