"""The ffmpeg supervisor: progress, errors, timeouts and no orphaned encoders.

Every ffmpeg here is real, fed by lavfi test sources. The orphan tests kill
a real Python process running ``run_ffmpeg`` the way a worker dies (SIGKILL
from the OOM killer, SIGTERM from Airflow) and look for its ffmpeg child.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from include.errors import TranscodeError
from include.media.ffmpeg import (
    FfmpegError,
    FfmpegTimeout,
    build_command,
    parse_progress_line,
    progress_percent,
    run_ffmpeg,
)

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

REPO = Path(__file__).resolve().parents[3]
LONG_ENCODE = ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "600", "-c:v", "libx264", "-f", "null", "-"]


# --------------------------------------------------------------------------
# progress parsing
# --------------------------------------------------------------------------


def test_parse_progress_line_collects_a_block() -> None:
    state: dict[str, str] = {}
    assert parse_progress_line("frame=25\n", state) is False
    assert parse_progress_line("out_time_us=1000000\n", state) is False
    assert parse_progress_line("speed=2.01x", state) is False
    assert parse_progress_line("progress=continue\n", state) is True
    assert state == {"frame": "25", "out_time_us": "1000000", "speed": "2.01x", "progress": "continue"}


def test_parse_progress_line_ignores_noise_and_keeps_equals_in_values() -> None:
    state: dict[str, str] = {}
    assert parse_progress_line("", state) is False
    assert parse_progress_line("garbage without separator", state) is False
    assert state == {}
    parse_progress_line("stream_0_0_q=28.0", state)
    parse_progress_line("weird=a=b", state)
    assert state == {"stream_0_0_q": "28.0", "weird": "a=b"}


def test_progress_percent() -> None:
    assert progress_percent({"out_time_us": "5000000"}, 10.0) == pytest.approx(50.0)
    # out_time_ms is microseconds too (an old ffmpeg naming mistake).
    assert progress_percent({"out_time_ms": "2500000"}, 10.0) == pytest.approx(25.0)
    assert progress_percent({"out_time_us": "20000000"}, 10.0) == 100.0  # clamped
    assert progress_percent({"out_time_us": "-40000"}, 10.0) == 0.0  # clamped (negative start times)
    assert progress_percent({"out_time_us": "N/A"}, 10.0) is None
    assert progress_percent({"out_time_us": "bogus"}, 10.0) is None
    assert progress_percent({}, 10.0) is None
    assert progress_percent({"out_time_us": "5000000"}, None) is None
    assert progress_percent({"out_time_us": "5000000"}, 0) is None
    assert progress_percent({"out_time_us": "N/A", "progress": "end"}, 10.0) == 100.0


def test_build_command_reports_progress_on_stdout() -> None:
    cmd = build_command(["-i", "file:/x.mp4", "-f", "null", "-"])
    assert cmd[0] == "ffmpeg"
    assert cmd[cmd.index("-progress") + 1] == "pipe:1"
    assert "-nostdin" in cmd and "-nostats" in cmd
    assert cmd[-5:] == ["-i", "file:/x.mp4", "-f", "null", "-"]


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------


def test_run_reports_increasing_progress_ending_at_100() -> None:
    updates: list[float] = []
    # -re paces the 2 s source in real time so several progress blocks arrive.
    args = ["-stats_period", "0.2", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=2",
            "-c:v", "libx264", "-preset", "ultrafast", "-f", "null", "-"]  # fmt: skip
    result = run_ffmpeg(args, duration_s=2.0, timeout_s=30, on_progress=updates.append, progress_interval_s=0)
    assert len(updates) >= 3, updates
    assert updates == sorted(updates), updates
    assert updates[0] < 100.0
    assert updates[-1] == 100.0
    assert result.progress_updates == len(updates)
    assert result.command == build_command(args)
    assert result.seconds >= 1.5


def test_progress_interval_throttles_but_always_reports_the_end() -> None:
    updates: list[float] = []
    args = ["-stats_period", "0.1", "-re", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1",
            "-c:v", "libx264", "-preset", "ultrafast", "-f", "null", "-"]  # fmt: skip
    run_ffmpeg(args, duration_s=1.0, timeout_s=30, on_progress=updates.append, progress_interval_s=60)
    assert updates[-1] == 100.0
    assert len(updates) <= 2  # the first block, then the end


def test_failure_raises_with_command_and_stderr_tail(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-input.mp4"
    args = ["-protocol_whitelist", "file", "-f", "mov", "-i", f"file:{missing}", "-f", "null", "-"]
    with pytest.raises(FfmpegError) as info:
        run_ffmpeg(args, timeout_s=30)
    exc = info.value
    assert not isinstance(exc, FfmpegTimeout)
    assert isinstance(exc, TranscodeError)
    assert exc.returncode not in (0, None)
    assert exc.command == build_command(args)
    text = str(exc)
    assert " ".join(build_command(args)) in text
    assert "No such file or directory" in exc.stderr_tail
    assert exc.stderr_tail in text


def _ffmpeg_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "ffmpeg" and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def test_timeout_kills_ffmpeg_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(FfmpegTimeout) as info:
        run_ffmpeg(LONG_ENCODE, duration_s=600, timeout_s=1)
    elapsed = time.monotonic() - started
    assert elapsed < 5, f"timeout took {elapsed:.1f} s"
    assert "timeout" in str(info.value)
    assert info.value.returncode == -signal.SIGKILL
    assert _ffmpeg_children() == []


def test_exception_in_progress_callback_kills_ffmpeg() -> None:
    """An exception while ffmpeg runs (as Airflow raises on SIGTERM) must not leave it running."""

    def boom(_percent: float) -> None:
        raise RuntimeError("task is being killed")

    with pytest.raises(RuntimeError, match="task is being killed"):
        run_ffmpeg(["-stats_period", "0.1", *LONG_ENCODE], duration_s=600, timeout_s=30, on_progress=boom, progress_interval_s=0)
    assert _ffmpeg_children() == []


# --------------------------------------------------------------------------
# no orphans when the worker process dies
# --------------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import signal, sys
    from include.media.ffmpeg import run_ffmpeg

    if sys.argv[1] == "raise":
        # What Airflow does: SIGTERM becomes an exception in the task.
        def on_term(signum, frame):
            raise SystemExit("terminated")
        signal.signal(signal.SIGTERM, on_term)
    run_ffmpeg({args!r}, duration_s=600, timeout_s=3600)
    """
).format(args=LONG_ENCODE)


def _wait_for_ffmpeg_child(parent: psutil.Process, deadline_s: float = 15.0) -> psutil.Process:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for child in parent.children():
            try:
                if child.name() == "ffmpeg":
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError("run_ffmpeg never started ffmpeg")


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # dead, waiting for init to reap it
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize(
    "sig,handler",
    [(signal.SIGKILL, "default"), (signal.SIGTERM, "default"), (signal.SIGTERM, "raise")],
    ids=["SIGKILL", "SIGTERM", "SIGTERM-as-exception"],
)
def test_ffmpeg_dies_with_its_worker(sig: signal.Signals, handler: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    worker = subprocess.Popen([sys.executable, "-c", RUNNER, handler], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    ffmpeg = None
    try:
        ffmpeg = _wait_for_ffmpeg_child(psutil.Process(worker.pid))
        assert ffmpeg.is_running()
        worker.send_signal(sig)
        worker.wait(timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not _gone(ffmpeg):
            time.sleep(0.05)
        assert _gone(ffmpeg), f"ffmpeg {ffmpeg.pid} outlived its worker after {sig.name}"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if ffmpeg is not None and not _gone(ffmpeg):
            ffmpeg.kill()  # only the child this test started, so later tests are not slowed
        if worker.stderr:
            worker.stderr.close()
