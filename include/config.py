"""Settings from the environment (``TRANSCODE_*``), read once and typed.

Every knob the pipeline has lives here so that the API, the DAGs and the
scripts agree on one value. ``.env.example`` documents each variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, default: str) -> str:
    value = os.environ.get(f"TRANSCODE_{name}")
    return default if value is None or value == "" else value


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"TRANSCODE_{name} must be an integer, got {raw!r}") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"TRANSCODE_{name} must be a number, got {raw!r}") from exc


def _env_bool(name: str, default: bool) -> bool:
    raw = _env(name, "1" if default else "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"TRANSCODE_{name} must be a boolean, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    var_dir: Path
    database_url: str
    storage_url: str
    s3_endpoint: str | None
    s3_region: str
    s3_secure: bool
    secrets_provider: str
    scratch_dir: Path
    max_width: int
    max_height: int
    max_duration_s: float
    max_source_bytes: int
    ffprobe_timeout_s: float
    ffmpeg_timeout_s: float
    x264_preset: str
    audio_bitrate_k: int
    ladder_json: str | None
    encode_units: int
    hw_encoders: str
    progress_interval_s: float
    task_retries: int
    # Operations (apply_retention, backup_database, drill_disaster_recovery).
    # Defaults keep direct Settings(...) construction elsewhere working.
    retention_completed_days: int = 90
    retention_failed_days: int = 30
    retention_cancelled_days: int = 30
    retention_source_days: int = 30
    retention_policies_json: str | None = None
    backup_keep_daily: int = 7
    backup_keep_weekly: int = 4
    rto_seconds: float = 3600.0
    drill_sample: int = 5
    drill_database_url: str | None = None
    airflow_database_url: str | None = None
    pg_bin: str | None = None
    metrics_dir: Path | None = None
    # API: where clients fetch HLS (NGINX), the request body limit, and how
    # many reverse proxies in front of the API may set X-Forwarded-*.
    public_base_url: str = "https://127.0.0.1:8443"
    max_upload_bytes: int = 20 * 1024**3
    trusted_proxies: int = 0
    # Delivery: how long a signed /hls/ URL handed out by the API stays valid.
    hls_url_ttl_s: int = 6 * 3600

    @property
    def database_is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def load_settings() -> Settings:
    """Build settings from the current environment (uncached; tests use this)."""
    var_dir = Path(_env("VAR_DIR", str(PROJECT_ROOT / "var"))).resolve()
    endpoint = _env("S3_ENDPOINT", "") or None
    return Settings(
        var_dir=var_dir,
        database_url=_env("DATABASE_URL", f"sqlite:///{var_dir / 'transcode.db'}"),
        storage_url=_env("STORAGE_URL", (var_dir / "storage").as_uri()),
        s3_endpoint=endpoint,
        s3_region=_env("S3_REGION", "us-east-1"),
        s3_secure=_env_bool("S3_SECURE", endpoint is None or endpoint.startswith("https")),
        secrets_provider=_env("SECRETS_PROVIDER", "env"),
        scratch_dir=Path(_env("SCRATCH_DIR", str(var_dir / "scratch"))),
        max_width=_env_int("MAX_WIDTH", 7680),
        max_height=_env_int("MAX_HEIGHT", 4320),
        max_duration_s=_env_float("MAX_DURATION_S", 6 * 3600.0),
        max_source_bytes=_env_int("MAX_SOURCE_BYTES", 20 * 1024**3),
        ffprobe_timeout_s=_env_float("FFPROBE_TIMEOUT_S", 30.0),
        ffmpeg_timeout_s=_env_float("FFMPEG_TIMEOUT_S", 6 * 3600.0),
        x264_preset=_env("X264_PRESET", "veryfast"),
        audio_bitrate_k=_env_int("AUDIO_BITRATE_K", 128),
        ladder_json=_env("LADDER", "") or None,
        encode_units=max(1, _env_int("ENCODE_UNITS", 1)),
        hw_encoders=_env("HW_ENCODERS", "auto"),
        progress_interval_s=_env_float("PROGRESS_INTERVAL_S", 2.0),
        task_retries=max(0, _env_int("TASK_RETRIES", 3)),
        retention_completed_days=_env_int("RETENTION_COMPLETED_DAYS", 90),
        retention_failed_days=_env_int("RETENTION_FAILED_DAYS", 30),
        retention_cancelled_days=_env_int("RETENTION_CANCELLED_DAYS", 30),
        retention_source_days=_env_int("RETENTION_SOURCE_DAYS", 30),
        retention_policies_json=_env("RETENTION_POLICIES", "") or None,
        backup_keep_daily=_env_int("BACKUP_KEEP_DAILY", 7),
        backup_keep_weekly=_env_int("BACKUP_KEEP_WEEKLY", 4),
        rto_seconds=_env_float("RTO_SECONDS", 3600.0),
        drill_sample=_env_int("DRILL_SAMPLE", 5),
        drill_database_url=_env("DRILL_DATABASE_URL", "") or None,
        airflow_database_url=_env("AIRFLOW_DATABASE_URL", "") or None,
        pg_bin=_env("PG_BIN", "") or None,
        metrics_dir=Path(_env("METRICS_DIR", str(var_dir / "metrics"))),
        public_base_url=_env("PUBLIC_BASE_URL", "https://127.0.0.1:8443").rstrip("/"),
        # Default: the largest source the pipeline accepts (a request body a
        # little larger than the file, for the multipart framing, is refused).
        max_upload_bytes=_env_int("MAX_UPLOAD_BYTES", _env_int("MAX_SOURCE_BYTES", 20 * 1024**3)),
        # 0 = trust no X-Forwarded-* header: the API logs the real peer address.
        trusted_proxies=max(0, _env_int("TRUSTED_PROXIES", 0)),
        hls_url_ttl_s=max(1, _env_int("HLS_URL_TTL_S", 6 * 3600)),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return load_settings()
