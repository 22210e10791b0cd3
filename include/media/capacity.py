"""Pool sizes for the transcode pools, from this worker's cores and GPUs.

One CPU encode unit already uses every core (x264 frame threads), so the CPU
pool admits about one unit per 8 cores, at least one. NVENC sessions are
capped per GPU by the driver on consumer cards; TRANSCODE_GPU_SESSIONS says
how many to run per device.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def cpu_slots(cores: int | None = None) -> int:
    cores = cores or os.cpu_count() or 1
    return max(1, cores // 8)


def gpu_count() -> int:
    """NVIDIA GPUs visible to this worker (0 without a driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def gpu_slots(gpus: int | None = None, sessions_per_gpu: int | None = None) -> int:
    """Concurrent GPU encode units; at least 1 so a misdetected GPU unit never waits forever
    (it falls back to the CPU on a worker whose test encode fails)."""
    gpus = gpu_count() if gpus is None else gpus
    sessions = sessions_per_gpu or int(os.environ.get("TRANSCODE_GPU_SESSIONS", "3"))
    return max(1, gpus * sessions)


def pools() -> dict[str, dict]:
    """Airflow's ``pools import`` format."""
    return {
        "transcode_cpu": {"slots": cpu_slots(), "description": "CPU encode units (one unit uses all cores)", "include_deferred": False},
        "transcode_gpu": {"slots": gpu_slots(), "description": "GPU encode units (NVENC/QSV/VAAPI sessions)", "include_deferred": False},
    }


if __name__ == "__main__":
    import json

    print(json.dumps(pools(), indent=1))
