"""Encoder detection: a hardware encoder counts only after a real test encode.

This machine's ffmpeg lists h264_nvenc but there is no GPU, which is exactly
the trap the detection exists for. The tests run the real test encodes; the
one place ``encoder_works`` is wrapped is the cache test, where a counting
spy (still calling the real function) proves the second call runs no ffmpeg.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from include.config import Settings, load_settings
from include.media import encoders
from include.media.encoders import (
    CPU_ENCODER,
    HW_ENCODERS,
    choose_video_encoder,
    detect_hw_encoders,
    encoder_works,
    spec_for,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

# These tests describe a worker without a GPU. On a machine that has one
# (an NVIDIA device node), the nvenc expectations would rightly differ.
no_gpu_here = pytest.mark.skipif(
    Path("/dev/nvidia0").exists() or Path("/dev/dri").exists(),
    reason="this machine has a GPU device; the no-GPU expectations do not apply",
)


def _settings(tmp_path: Path, hw_encoders: str) -> Settings:
    return dataclasses.replace(load_settings(), scratch_dir=tmp_path / "scratch", hw_encoders=hw_encoders)


def _listed_encoders() -> str:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=30, check=True
    ).stdout


def test_encode_command_is_one_frame_to_null() -> None:
    cmd = encoders.test_encode_command("h264_nvenc")  # module attribute: a bare import would be collected
    assert cmd[0] == "ffmpeg"
    assert cmd[cmd.index("-c:v") + 1] == "h264_nvenc"
    assert cmd[cmd.index("-frames:v") + 1] == "1"
    assert cmd[-3:] == ["-f", "null", "-"]
    vaapi = encoders.test_encode_command("h264_vaapi")
    assert vaapi.index("-vaapi_device") < vaapi.index("-i")
    assert "hwupload" in vaapi[vaapi.index("-vf") + 1]


def test_spec_for_unknown_encoder() -> None:
    with pytest.raises(ValueError):
        spec_for("h264_magic")
    assert not spec_for(CPU_ENCODER).is_gpu


@no_gpu_here
def test_nvenc_is_listed_but_does_not_work() -> None:
    if "h264_nvenc" not in _listed_encoders():
        pytest.skip("this ffmpeg build does not list h264_nvenc")
    works, reason = encoder_works("h264_nvenc")
    assert works is False
    assert reason.startswith("test encode failed")
    assert "exit" in reason and len(reason) > len("test encode failed (exit 1): ")


def test_libx264_test_encode_works() -> None:
    assert encoder_works(CPU_ENCODER) == (True, "test encode succeeded")


@pytest.mark.parametrize("mode", ["off", "none", "0", "false", " OFF "])
def test_detection_off_returns_nothing_and_runs_nothing(tmp_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(name: str):  # a tripwire, not a stand-in: it must never be called
        raise AssertionError(f"encoder_works({name!r}) called with hw_encoders={mode!r}")

    monkeypatch.setattr(encoders, "encoder_works", forbidden)
    settings = _settings(tmp_path, mode)
    assert detect_hw_encoders(settings) == {}
    assert choose_video_encoder(settings) == CPU_ENCODER
    assert not (settings.scratch_dir / "encoder-cache").exists()


@no_gpu_here
def test_cache_is_written_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Monkeypatched: ``encoder_works`` is wrapped by a counting spy that still
    runs the real test encode, so the count shows when ffmpeg was (not) run."""
    calls: list[str] = []
    real = encoders.encoder_works

    def counting(name: str) -> tuple[bool, str]:
        calls.append(name)
        return real(name)

    monkeypatch.setattr(encoders, "encoder_works", counting)
    settings = _settings(tmp_path, "auto")

    first = detect_hw_encoders(settings)
    assert first == {}
    assert calls == list(HW_ENCODERS)
    cache_files = list((settings.scratch_dir / "encoder-cache").glob("*.json"))
    assert len(cache_files) == 1
    cached = json.loads(cache_files[0].read_text())
    assert cached == {"candidates": list(HW_ENCODERS), "working": {}}
    assert not list((settings.scratch_dir / "encoder-cache").glob("*.tmp"))

    second = detect_hw_encoders(settings)
    assert second == first
    assert calls == list(HW_ENCODERS), "the cached answer must not run ffmpeg again"

    # A different candidate list is a different question: detect again.
    only_nvenc = _settings(tmp_path, "h264_nvenc")
    assert detect_hw_encoders(only_nvenc) == {}
    assert calls == [*HW_ENCODERS, "h264_nvenc"]

    # use_cache=False always tests for real.
    detect_hw_encoders(settings, use_cache=False)
    assert calls == [*HW_ENCODERS, "h264_nvenc", *HW_ENCODERS]


def test_cached_working_encoder_is_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated GPU worker (label: no GPU here): a cache file written by a
    worker whose nvenc test encode passed makes nvenc the choice, without
    running ffmpeg."""
    settings = _settings(tmp_path, "auto")
    cache = encoders._cache_path(settings)
    cache.parent.mkdir(parents=True)
    cache.write_text(json.dumps({"candidates": list(HW_ENCODERS), "working": {"h264_nvenc": "test encode succeeded"}}))
    monkeypatch.setattr(encoders, "encoder_works", lambda name: pytest.fail("cache was ignored"))
    assert choose_video_encoder(settings) == "h264_nvenc"


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "h264_qsv")
    cache = encoders._cache_path(settings)
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert detect_hw_encoders(settings) == {}
    assert json.loads(cache.read_text()) == {"candidates": ["h264_qsv"], "working": {}}


@no_gpu_here
def test_choose_video_encoder_falls_back_to_libx264(tmp_path: Path) -> None:
    assert choose_video_encoder(_settings(tmp_path, "auto")) == CPU_ENCODER
