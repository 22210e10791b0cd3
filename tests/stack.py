"""A private copy of the local stack (`make up`) for tests and benchmarks.

Same script, same components (Airflow api-server, scheduler, dag-processor,
triggerer on LocalExecutor, the job API under gunicorn and NGINX), but on free
ports with its own AIRFLOW_HOME and TRANSCODE_VAR_DIR, so it never touches a
developer's running stack.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from include.config import PROJECT_ROOT

STACK = PROJECT_ROOT / "scripts" / "stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    root: Path
    airflow_port: int
    api_port: int
    https_port: int = 0  # NGINX (HTTPS: API, signed HLS, player)
    http_port: int = 0  # NGINX (HTTP: 301 to HTTPS)
    env: dict[str, str] = field(default_factory=dict)
    _token: str | None = None

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ca_cert(self) -> Path:
        """The private stack's local CA (verify=stack.ca_cert for https_url)."""
        return self.root / "tls" / "ca.pem"

    def run(self, action: str, timeout: int = 400) -> subprocess.CompletedProcess:
        return subprocess.run([str(STACK), action], env=self.env, capture_output=True, text=True, timeout=timeout)

    def token(self) -> str:
        """Bearer token for Airflow's REST API (what the UI uses)."""
        if self._token is None:
            passwords = json.loads((self.root / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
            response = requests.post(f"{self.airflow_url}/auth/token",
                                     json={"username": "admin", "password": passwords["admin"]}, timeout=30)  # fmt: skip
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def airflow(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return requests.request(method, f"{self.airflow_url}/api/v2{path}", headers=headers, timeout=60, **kwargs)

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for log in sorted((self.root / "log").glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(out)


def start_stack(root: Path, components: str | None = None, extra_env: dict[str, str] | None = None) -> Stack:
    stack = Stack(root=root, airflow_port=free_port(), api_port=free_port(), https_port=free_port(),
                  http_port=free_port())  # fmt: skip
    stack.env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow"),
        "TRANSCODE_VAR_DIR": str(root),
        "TRANSCODE_DATABASE_URL": "",
        "TRANSCODE_STORAGE_URL": "",
        "AIRFLOW__API__PORT": str(stack.airflow_port),
        "TRANSCODE_API_BIND": f"127.0.0.1:{stack.api_port}",
        "TRANSCODE_HTTPS_PORT": str(stack.https_port),
        "TRANSCODE_HTTP_PORT": str(stack.http_port),
        "TRANSCODE_PUBLIC_BASE_URL": f"https://127.0.0.1:{stack.https_port}",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        **(extra_env or {}),
    }
    if components:
        stack.env["STACK_COMPONENTS"] = components
    proc = stack.run("up")
    if proc.returncode != 0:
        stack.run("down")
        raise RuntimeError(f"stack did not start:\n{proc.stdout}\n{proc.stderr}\n{stack.log_tail()}")
    return stack


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
