"""Operator commands: the same functions the operations DAGs run.

    python -m include.ops backup                  # dump + manifest + rotation (backup_database)
    python -m include.ops list                    # complete backups, newest last
    python -m include.ops fetch latest --to DIR   # download dumps + manifest, check SHA-256
    python -m include.ops restore latest --target-url URL [--create]
    python -m include.ops drill [latest|STAMP]    # drill_disaster_recovery without Airflow
    python -m include.ops retention [--dry-run] [--run-id ID]
    python -m include.ops prune                   # backup rotation only

Settings come from the TRANSCODE_* environment as everywhere else
(``source scripts/env.sh`` first). Each command prints a JSON result on its
last line; exit status 1 means a verification failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from include.errors import InputRejected
from include.ops import backup, drill, retention
from include.ops.common import VerificationFailed, timestamp
from include.storage import get_storage


def _fetch(selector: str, to: Path) -> dict[str, Any]:
    storage = get_storage()
    key = drill.find_backup(selector, storage=storage)
    manifest = drill.load_manifest(key, storage)
    to.mkdir(parents=True, exist_ok=True)
    (to / key.rsplit("/", 1)[-1]).write_bytes(storage.get_bytes(key))
    files = []
    for entry in manifest["databases"]:
        files.append(str(drill.fetch_dump(entry, to, storage)))
        # The sidecar lets the operator re-check by hand: sha256sum -c FILE.sha256
        sidecar = f"{entry['key']}.sha256"
        if storage.exists(sidecar):
            storage.get_file(sidecar, to / sidecar.rsplit("/", 1)[-1])
    return {"manifest_key": key, "files": files, "verified": "sha256 and size match the manifest"}


def _list() -> dict[str, Any]:
    storage = get_storage()
    out = []
    for stamp in backup.list_backups(storage):
        dumps = [k for k in storage.list(f"backups/db/{stamp}-") if not k.endswith(".sha256")]
        out.append({"stamp": stamp, "dumps": {k: storage.size(k) for k in dumps}})
    return {"backups": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.ops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("backup", help="dump the databases, write the manifest, rotate old backups")
    sub.add_parser("list", help="list complete backups")
    fetch = sub.add_parser("fetch", help="download a backup's manifest and dumps and verify their SHA-256")
    fetch.add_argument("backup", nargs="?", default="latest")
    fetch.add_argument("--to", type=Path, required=True)
    restore = sub.add_parser("restore", help="restore a backup into a new, empty database and verify it")
    restore.add_argument("backup", nargs="?", default="latest")
    restore.add_argument("--target-url", default=os.environ.get("TRANSCODE_RESTORE_TARGET_URL"),
                         help="SQLAlchemy URL of the new database (default: $TRANSCODE_RESTORE_TARGET_URL)")
    restore.add_argument("--create", action="store_true", help="create the target database when missing")
    run = sub.add_parser("drill", help="restore into a scratch database, verify, report, drop")
    run.add_argument("backup", nargs="?", default="latest")
    run.add_argument("--sample", type=int)
    run.add_argument("--rto-seconds", type=float)
    keep = sub.add_parser("retention", help="apply the retention policies")
    keep.add_argument("--dry-run", action="store_true")
    keep.add_argument("--run-id", help="resume this run (default: a new manual run id)")
    keep.add_argument("--policies", help="JSON list of policies (default: settings)")
    sub.add_parser("prune", help="backup rotation only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "backup":
            result: Any = backup.run_backup()
        elif args.command == "list":
            result = _list()
        elif args.command == "fetch":
            result = _fetch(args.backup, args.to)
        elif args.command == "restore":
            if not args.target_url:
                parser.error("restore needs --target-url (or TRANSCODE_RESTORE_TARGET_URL)")
            result = drill.restore_backup(args.backup, args.target_url, create=args.create)
        elif args.command == "drill":
            result = drill.run_drill(args.backup, sample=args.sample, rto_seconds=args.rto_seconds)
        elif args.command == "retention":
            policies = retention.resolve_policies(args.policies)
            run_id = args.run_id or f"manual__{timestamp()}"
            result = retention.run_retention(run_id, dry_run=args.dry_run, policies=policies)
            print(retention.format_report(result))
        else:
            result = backup.prune_backups()
    except VerificationFailed as exc:
        print(json.dumps({"ok": False, "findings": exc.failures}))
        return 1
    except InputRejected as exc:
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
