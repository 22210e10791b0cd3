"""A throw-away PostgreSQL server for tests, started from the machine's binaries.

``TRANSCODE_TEST_DATABASE_URL`` points the tests at an existing server
instead (nothing is started or stopped then). ``TRANSCODE_PG_BIN`` overrides
where ``initdb``/``pg_ctl`` are looked up.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

DATABASE = "transcode"
TEST_URL_ENV = "TRANSCODE_TEST_DATABASE_URL"


def find_pg_bin() -> Path:
    """The directory holding initdb and pg_ctl: the same lookup the ops code uses for pg_dump."""
    from include.config import load_settings
    from include.ops.common import OpsInputError, pg_bin_dir

    try:
        return pg_bin_dir(load_settings())
    except OpsInputError as exc:
        raise RuntimeError(f"PostgreSQL binaries not found ({exc}), or point {TEST_URL_ENV} at a server") from exc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses to run as root; drop to the postgres user when we are root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


def _create_database(port: int) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(
        f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    finally:
        admin.dispose()
    return f"postgresql+psycopg2://postgres@127.0.0.1:{port}/{DATABASE}"


def start_postgres(tmpdir: str | os.PathLike[str]) -> tuple[str, Callable[[], None]]:
    """Start a scratch server; returns (SQLAlchemy URL, stop function).

    Runs with fsync off: speed over durability, the data is thrown away.
    """
    url = os.environ.get(TEST_URL_ENV)
    if url:
        return url, lambda: None

    bindir = find_pg_bin()
    if os.geteuid() == 0:
        # pytest's tmp dirs sit under a root-only (0700) parent the postgres
        # user cannot traverse, so the cluster lives in its own short path
        # (which also keeps the unix socket path under its length limit).
        base = Path(tempfile.mkdtemp(prefix="transcode-pg-"))
        shutil.chown(base, user="postgres", group="postgres")
    else:
        base = Path(tempfile.mkdtemp(prefix="pg-", dir=tmpdir))
    datadir, logfile = base / "data", base / "server.log"

    def stop() -> None:
        if (datadir / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "stop", "-D", str(datadir), "-m", "immediate", "-w"]),
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)

    try:
        _run(
            [str(bindir / "initdb"), "-D", str(datadir), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--no-sync"],
            "initdb",
        )
        last_error: Exception | None = None
        # A free port can be taken between probing and binding; try a few.
        for _ in range(3):
            port = _free_port()
            options = (
                f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                _run(
                    [str(bindir / "pg_ctl"), "start", "-D", str(datadir), "-l", str(logfile),
                     "-w", "-t", "60", "-o", options],
                    "pg_ctl start",
                )
            except RuntimeError as exc:
                log = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
                last_error = RuntimeError(f"{exc}\nserver log:\n{log}")
                continue
            return _create_database(port), stop
        assert last_error is not None
        raise last_error
    except BaseException:
        stop()
        raise
