"""``transcode-flow``: manage API keys (direct DB) and talk to the job API (HTTP).

    transcode-flow apikey create NAME      # the new key is printed alone on the last line
    transcode-flow apikey revoke KEY_ID
    transcode-flow apikey list
    transcode-flow submit FILE [--priority N] [--metadata JSON] [--wait]
    transcode-flow status JOB_ID
    transcode-flow list [--status S]

The HTTP commands use ``TRANSCODE_API_URL`` (default http://127.0.0.1:5000)
and the key from ``--key`` or ``TRANSCODE_API_KEY``. Uploads stream from disk
(multipart encoded on the fly), so file size does not matter to memory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

DEFAULT_API_URL = "http://127.0.0.1:5000"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
# After the body is sent the server probes the file (ffprobe + a short
# decode) before answering.
UPLOAD_READ_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 1.0
# --wait survives a server restart or a short network outage.
MAX_POLL_FAILURES = 30
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
BAR_WIDTH = 30


class CliError(Exception):
    """A failure to report on stderr with exit status 1."""


# --------------------------------------------------------------------------
# apikey (direct database access: run on the API host)
# --------------------------------------------------------------------------


def _apikey(args: argparse.Namespace) -> int:
    from include.config import load_settings
    from include.jobs.db import migrate, session_scope
    from security import api_keys

    url = load_settings().database_url
    migrate(url)
    with session_scope(url) as session:
        if args.apikey_command == "create":
            try:
                row, key = api_keys.create_api_key(session, args.name)
            except ValueError as exc:
                raise CliError(str(exc)) from None
            print(f"created key {row.id} for {row.name}")
            print("store it now: it is shown only once", file=sys.stderr)
            # Alone on the last line, so scripts can take it with `tail -n1`.
            print(key)
        elif args.apikey_command == "revoke":
            try:
                row = api_keys.revoke_api_key(session, args.key_id)
            except KeyError:
                raise CliError(f"no API key with id {args.key_id}") from None
            print(f"revoked key {row.id} ({row.name})")
        else:
            rows = api_keys.list_api_keys(session)
            print(f"{'ID':32}  {'CREATED':20}  {'STATE':8}  NAME")
            for row in rows:
                state = "revoked" if row.revoked_at else "active"
                print(f"{row.id:32}  {row.created_at:%Y-%m-%dT%H:%M:%SZ}  {state:8}  {row.name}")
    return 0


# --------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------


class Client:
    """A thin requests wrapper: base URL, key header, TLS options, timeouts, JSON errors."""

    def __init__(self, base_url: str, key: str | None, verify: bool | str) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.verify = verify
        if key:
            self.session.headers["X-API-Key"] = key

    def request(self, method: str, path: str, *, timeout: tuple[float, float] | None = None, **kwargs: Any) -> Any:
        import requests

        try:
            response = self.session.request(
                method, self.base_url + path, timeout=timeout or (CONNECT_TIMEOUT_S, READ_TIMEOUT_S), **kwargs
            )
        except requests.RequestException as exc:
            raise CliError(f"cannot reach the API at {self.base_url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise CliError(_describe_error(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"unexpected non-JSON answer (HTTP {response.status_code}) from {self.base_url}") from None


def _describe_error(response: Any) -> str:
    try:
        error = response.json()["error"]
        return f"HTTP {response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} from the API"


def _client(args: argparse.Namespace) -> Client:
    key = args.key or os.environ.get("TRANSCODE_API_KEY")
    if not key:
        raise CliError("no API key: pass --key or set TRANSCODE_API_KEY")
    verify: bool | str = True
    if args.insecure:
        verify = False
        import urllib3

        urllib3.disable_warnings()  # the user asked for it explicitly
    elif args.ca:
        if not Path(args.ca).is_file():
            raise CliError(f"CA bundle {args.ca} does not exist")
        verify = args.ca
    return Client(args.url or os.environ.get("TRANSCODE_API_URL") or DEFAULT_API_URL, key, verify)


# --------------------------------------------------------------------------
# submit / status / list
# --------------------------------------------------------------------------


def _progress_bar(job: dict[str, Any], out: IO[str]) -> None:
    percent = max(0.0, min(100.0, float(job.get("progress") or 0.0)))
    filled = int(round(BAR_WIDTH * percent / 100))
    out.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {percent:5.1f}% {job['status']:<10}")
    out.flush()


def _wait(client: Client, job_id: str) -> dict[str, Any]:
    failures = 0
    while True:
        try:
            job = client.request("GET", f"/api/jobs/{job_id}")
            failures = 0
        except CliError as exc:
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise
            print(f"\nstill waiting ({exc})", file=sys.stderr)
            time.sleep(POLL_INTERVAL_S)
            continue
        _progress_bar(job, sys.stderr)
        if job["status"] in FINAL_STATUSES:
            sys.stderr.write("\n")
            return job
        time.sleep(POLL_INTERVAL_S)


def _submit(args: argparse.Namespace) -> int:
    from requests_toolbelt import MultipartEncoder

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"{path} is not a file")
    if args.metadata is not None:
        try:
            parsed = json.loads(args.metadata)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise CliError("--metadata must be a JSON object, e.g. '{\"title\": \"x\"}'")
    client = _client(args)
    with open(path, "rb") as fh:
        fields: dict[str, Any] = {"file": (path.name, fh, "application/octet-stream")}
        if args.priority is not None:
            fields["priority"] = str(args.priority)
        if args.metadata is not None:
            fields["metadata"] = (None, args.metadata, "application/json")
        # Encodes lazily while requests reads it: the file is never in memory.
        body = MultipartEncoder(fields=fields)
        headers = {"Content-Type": body.content_type}
        if args.idempotency_key:
            headers["Idempotency-Key"] = args.idempotency_key
        job = client.request(
            "POST", "/api/upload", data=body, headers=headers, timeout=(CONNECT_TIMEOUT_S, UPLOAD_READ_TIMEOUT_S)
        )
    print(f"job {job['job_id']} {job['status']} (priority {job['priority']})")
    if not args.wait:
        return 0
    job = _wait(client, job["job_id"])
    if job["status"] != "completed":
        raise CliError(f"job {job['job_id']} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
    print(f"master: {job['outputs']['master_url']}")
    return 0


def _status(args: argparse.Namespace) -> int:
    job = _client(args).request("GET", f"/api/jobs/{args.job_id}")
    print(json.dumps(job, indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit, "offset": args.offset}
    if args.status:
        params["status"] = args.status
    page = _client(args).request("GET", "/api/jobs", params=params)
    print(f"{'JOB_ID':32}  {'STATUS':10}  {'PROGRESS':>8}  {'CREATED':24}  SOURCE")
    for job in page["jobs"]:
        print(f"{job['job_id']:32}  {job['status']:10}  {job['progress']:7.1f}%  {job['created_at']:24}  {job['source_name']}")
    shown = len(page["jobs"])
    print(f"{shown} of {page['total']} job(s) (offset {page['offset']})", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------


def _http_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"API base URL (default: $TRANSCODE_API_URL or {DEFAULT_API_URL})")
    # Command lines are visible to other local users (ps); the variable is not.
    parser.add_argument("--key", help="API key (default: $TRANSCODE_API_KEY, preferred: not visible in ps)")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--ca", metavar="FILE", help="CA bundle to verify the API's TLS certificate with")
    tls.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate (testing only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transcode-flow", description="Transcode Flow command-line client.")
    commands = parser.add_subparsers(dest="command", required=True)

    apikey = commands.add_parser("apikey", help="manage API keys (direct database access)")
    apikey_commands = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_commands.add_parser("create", help="create a key; prints it once, alone on the last line")
    create.add_argument("name")
    revoke = apikey_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    apikey_commands.add_parser("list", help="list keys (never the keys themselves)")

    submit = commands.add_parser("submit", help="upload a video and create a job")
    submit.add_argument("file")
    submit.add_argument("--priority", type=int, choices=range(1, 11), metavar="N", help="1-10, 10 most urgent (default 5)")
    submit.add_argument("--metadata", metavar="JSON", help="JSON object stored with the job")
    submit.add_argument("--idempotency-key", metavar="KEY", help="retrying with the same key returns the same job")
    submit.add_argument("--wait", action="store_true", help="follow the job; exit 0 only if it completes")
    _http_options(submit)

    status = commands.add_parser("status", help="show one job")
    status.add_argument("job_id")
    _http_options(status)

    listing = commands.add_parser("list", help="list your jobs, newest first")
    listing.add_argument("--status", choices=["pending", "queued", "processing", "completed", "failed", "cancelled"])
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--offset", type=int, default=0)
    _http_options(listing)
    return parser


_HANDLERS = {"apikey": _apikey, "submit": _submit, "status": _status, "list": _list}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _HANDLERS[args.command](args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
