"""Run ffmpeg as a supervised child: progress, timeout, no orphans.

Commands are ``list[str]`` (never a shell string) so tests can assert on
them and file names can never be interpreted by a shell.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from include.errors import TranscodeError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 30
PR_SET_PDEATHSIG = 1


class FfmpegError(TranscodeError):
    """ffmpeg failed; carries the command and the end of its stderr."""

    def __init__(self, message: str, command: list[str], returncode: int | None, stderr_tail: str):
        self.command = command
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        super().__init__(f"{message} (exit {returncode})\ncommand: {' '.join(command)}\nstderr:\n{stderr_tail}")


class FfmpegTimeout(FfmpegError):
    pass


@dataclass
class FfmpegResult:
    command: list[str]
    seconds: float
    stderr_tail: str
    progress_updates: int = 0
    extra: dict = field(default_factory=dict)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel SIGKILLs ffmpeg when
    # the task process dies, even if the task itself is SIGKILLed and no
    # Python cleanup gets to run.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_child_on_sigterm(proc: subprocess.Popen) -> Callable[[], None]:
    """Kill ffmpeg as soon as this process gets SIGTERM, then defer to the old handler.

    Airflow 3's task runner answers SIGTERM with ``on_kill()`` and keeps
    running (SIGKILL follows later), so without this an encode would go on
    until the escalation. Returns a function that restores the old handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        if proc.poll() is None:
            proc.kill()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def build_command(args: list[str]) -> list[str]:
    """The full ffmpeg command line with machine-readable progress on stdout."""
    return ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error", "-progress", "pipe:1", "-nostats", *args]


def parse_progress_line(line: str, state: dict[str, str]) -> bool:
    """Feed one ``key=value`` line; True when a progress block is complete."""
    key, sep, value = line.strip().partition("=")
    if not sep:
        return False
    state[key] = value
    return key == "progress"


def progress_percent(state: dict[str, str], duration_s: float | None) -> float | None:
    if not duration_s or duration_s <= 0:
        return None
    raw = state.get("out_time_us") or state.get("out_time_ms")  # both are microseconds
    if state.get("progress") == "end":
        return 100.0
    try:
        seconds = int(raw) / 1_000_000 if raw not in (None, "N/A") else None
    except ValueError:
        return None
    if seconds is None:
        return None
    return max(0.0, min(100.0, 100.0 * seconds / duration_s))


def run_ffmpeg(
    args: list[str],
    *,
    duration_s: float | None = None,
    timeout_s: float = 3600.0,
    on_progress: Callable[[float], None] | None = None,
    progress_interval_s: float = 2.0,
) -> FfmpegResult:
    """Run ``ffmpeg <args>``; raise FfmpegError with command + stderr tail on failure.

    The child is killed on timeout, on any exception here (including the
    SIGTERM Airflow turns into an exception) and by the kernel if this
    process dies outright.
    """
    command = build_command(args)
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
    started = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        preexec_fn=_die_with_parent,
    )
    timed_out = threading.Event()

    def drain_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip())

    def watchdog() -> None:
        if proc.poll() is None:
            timed_out.set()
            proc.kill()

    restore_sigterm = _kill_child_on_sigterm(proc)
    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    timer = threading.Timer(timeout_s, watchdog)
    timer.daemon = True
    timer.start()
    updates = 0
    last_report = 0.0
    state: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not parse_progress_line(line, state):
                continue
            percent = progress_percent(state, duration_s)
            now = time.monotonic()
            if percent is not None and on_progress and (now - last_report >= progress_interval_s or percent >= 100):
                last_report = now
                updates += 1
                on_progress(percent)
        returncode = proc.wait()
    finally:
        restore_sigterm()
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    stderr_tail = "\n".join(tail)
    if timed_out.is_set():
        raise FfmpegTimeout(f"ffmpeg exceeded its {timeout_s:.0f} s timeout", command, returncode, stderr_tail)
    if returncode != 0:
        raise FfmpegError("ffmpeg failed", command, returncode, stderr_tail)
    return FfmpegResult(command=command, seconds=time.monotonic() - started, stderr_tail=stderr_tail, progress_updates=updates)
