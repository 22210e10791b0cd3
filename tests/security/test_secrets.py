"""security.secrets: providers, caching and error reporting.

- ``env``: the real provider, no stand-ins.
- ``aws``: real boto3 Secrets Manager client against a moto server.
  STAND-IN: moto in server mode plays AWS Secrets Manager (see
  ``tests/s3server.py``); there is no AWS account or LocalStack here.
- ``vault``: MOCK. No Vault server can be installed or run on this machine,
  so those tests inject a fake ``hvac.Client`` via monkeypatch that mimics
  ``secrets.kv.v2.read_secret_version``. They check our request (address,
  token, mount, path, field) and error mapping, not Vault itself.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import hvac
import pytest
from hvac import exceptions as hvac_exc

import security.secrets as secrets
from include.config import get_settings
from security.secrets import SecretUnavailable, clear_cache, get_secret, require_secret
from tests.s3server import start_moto_server

SECRET_VALUE = "s3cr3t-VALUE-that-must-never-be-logged"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in [
        "TRANSCODE_SECRETS_PROVIDER",
        "TRANSCODE_SECRETS_ENDPOINT",
        "TRANSCODE_VAULT_MOUNT",
        "VAULT_ADDR",
        "VAULT_TOKEN",
    ]:
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    clear_cache()
    yield
    get_settings.cache_clear()
    clear_cache()


def _use(monkeypatch: pytest.MonkeyPatch, provider: str) -> None:
    monkeypatch.setenv("TRANSCODE_SECRETS_PROVIDER", provider)
    get_settings.cache_clear()


def _name() -> str:
    return f"TF_TEST_SECRET_{uuid.uuid4().hex[:10].upper()}"


# -- env provider ------------------------------------------------------------


def test_env_provider_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name()
    monkeypatch.setenv(name, SECRET_VALUE)
    assert get_secret(name) == SECRET_VALUE
    assert require_secret(name) == SECRET_VALUE


def test_env_is_the_default_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name()
    monkeypatch.setenv(name, "v")
    assert get_settings().secrets_provider == "env"
    assert get_secret(name) == "v"


def test_missing_secret_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_secret(_name(), default="fallback") == "fallback"
    name = _name()
    monkeypatch.setenv(name, "")  # empty counts as unset
    assert get_secret(name, default="fallback") == "fallback"


def test_missing_secret_raises_with_name_and_hint(caplog: pytest.LogCaptureFixture) -> None:
    name = _name()
    with caplog.at_level(logging.ERROR, logger="security.secrets"):
        with pytest.raises(SecretUnavailable) as err:
            get_secret(name)
    assert name in str(err.value)
    assert f"export {name}=" in str(err.value)  # actionable
    assert name in caplog.text  # and logged
    with pytest.raises(SecretUnavailable, match=name):
        require_secret(name)


def test_unknown_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, "keyring")
    with pytest.raises(SecretUnavailable, match="keyring"):
        get_secret("ANY")


def test_empty_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        get_secret("")


# -- cache -------------------------------------------------------------------


def test_values_are_cached_for_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(secrets, "_clock", lambda: now[0])
    name = _name()
    monkeypatch.setenv(name, "v1")
    assert get_secret(name) == "v1"
    monkeypatch.setenv(name, "v2")  # rotated at the provider
    now[0] += 299
    assert get_secret(name) == "v1"  # still cached
    now[0] += 2
    assert get_secret(name) == "v2"  # expired after 300 s
    monkeypatch.setenv(name, "v3")
    clear_cache()
    assert get_secret(name) == "v3"


def test_misses_are_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name()
    assert get_secret(name, default="d") == "d"
    monkeypatch.setenv(name, "now-set")
    assert get_secret(name) == "now-set"


def test_cache_is_per_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name()
    monkeypatch.setenv(name, "from-env")
    assert get_secret(name) == "from-env"
    _use(monkeypatch, "vault")  # no VAULT_ADDR: must not be served from env's cache
    assert get_secret(name, default="d") == "d"


def test_concurrent_first_reads_call_the_provider_once(monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name()
    monkeypatch.setenv(name, SECRET_VALUE)
    calls = []
    real_fetch = secrets._FETCHERS["env"]

    def slow_counting_fetch(n: str) -> str:
        calls.append(n)
        time.sleep(0.05)  # long enough for every thread to pile up on the lock
        return real_fetch(n)

    monkeypatch.setitem(secrets._FETCHERS, "env", slow_counting_fetch)
    results: list[str | None] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait()
        results.append(get_secret(name))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [SECRET_VALUE] * 16
    assert calls == [name]


# -- aws provider (moto Secrets Manager stand-in) ----------------------------


@pytest.fixture(scope="module")
def secretsmanager_endpoint() -> Iterator[str]:
    # Always moto: a real MinIO configured for the S3 tests has no Secrets Manager.
    url, stop = start_moto_server(use_configured=False)
    try:
        yield url
    finally:
        stop()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, secretsmanager_endpoint: str) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("TRANSCODE_S3_REGION", "eu-west-1")
    monkeypatch.setenv("TRANSCODE_SECRETS_ENDPOINT", secretsmanager_endpoint)
    _use(monkeypatch, "aws")
    return boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=secretsmanager_endpoint)


def test_aws_provider_reads_secret_string(aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    name = f"transcode/{_name()}"
    aws.create_secret(Name=name, SecretString=SECRET_VALUE)
    with caplog.at_level(logging.DEBUG):
        assert get_secret(name) == SECRET_VALUE
    assert SECRET_VALUE not in caplog.text


def test_aws_provider_reads_secret_binary(aws: Any) -> None:
    name = _name()
    aws.create_secret(Name=name, SecretBinary=b"binary-value")
    assert get_secret(name) == "binary-value"


def test_aws_provider_uses_settings_region(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _name()
    aws.create_secret(Name=name, SecretString="eu-only")
    # moto keeps regions apart like AWS does, so the region really is used.
    monkeypatch.setenv("TRANSCODE_S3_REGION", "us-east-2")
    get_settings.cache_clear()
    assert get_secret(name, default="not-in-us-east-2") == "not-in-us-east-2"


def test_aws_provider_missing_secret(aws: Any) -> None:
    name = _name()
    with pytest.raises(SecretUnavailable) as err:
        get_secret(name)
    assert name in str(err.value)
    assert "aws secretsmanager create-secret" in str(err.value)
    assert get_secret(name, default="d") == "d"


def test_aws_provider_unreachable(aws: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TRANSCODE_SECRETS_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    name = _name()
    with caplog.at_level(logging.ERROR, logger="security.secrets"):
        with pytest.raises(SecretUnavailable) as err:
            get_secret(name)
    assert name in str(err.value)
    assert "TRANSCODE_SECRETS_ENDPOINT" in str(err.value)
    assert name in caplog.text
    assert get_secret(name, default="d") == "d"


# -- vault provider (MOCK: fake hvac client) ---------------------------------


class FakeVault:
    """MOCK of the bits of ``hvac.Client`` we use; no Vault server runs here."""

    store: dict[tuple[str, str], dict[str, Any]] = {}
    instances: list[FakeVault] = []
    fail_with: Exception | None = None

    def __init__(self, url: str | None = None, token: str | None = None, **_: Any) -> None:
        self.url = url
        self.token = token
        self.requests: list[dict[str, Any]] = []
        FakeVault.instances.append(self)
        # client.secrets.kv.v2.read_secret_version(...)
        v2 = type("V2", (), {"read_secret_version": self._read})()
        kv = type("KV", (), {"v2": v2})()
        self.secrets = type("Secrets", (), {"kv": kv})()

    def _read(self, path: str, mount_point: str = "secret", raise_on_deleted_version: bool | None = None,
              **_: Any) -> dict[str, Any]:
        self.requests.append({"path": path, "mount_point": mount_point})
        if FakeVault.fail_with is not None:
            raise FakeVault.fail_with
        try:
            data = FakeVault.store[(mount_point, path)]
        except KeyError:
            raise hvac_exc.InvalidPath(f"no secret at {mount_point}/{path}") from None
        return {"data": {"data": data, "metadata": {"version": 1}}}


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch) -> type[FakeVault]:
    FakeVault.store = {}
    FakeVault.instances = []
    FakeVault.fail_with = None
    monkeypatch.setattr(hvac, "Client", FakeVault)
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    monkeypatch.setenv("VAULT_TOKEN", "tok-123")
    _use(monkeypatch, "vault")
    return FakeVault


def test_vault_provider_reads_value_field(vault: type[FakeVault]) -> None:
    vault.store[("secret", "transcode/s3")] = {"value": SECRET_VALUE, "other": "x"}
    assert get_secret("transcode/s3") == SECRET_VALUE
    client = vault.instances[-1]
    assert (client.url, client.token) == ("https://vault.internal:8200", "tok-123")
    assert client.requests == [{"path": "transcode/s3", "mount_point": "secret"}]
    get_secret("transcode/s3")
    assert len(vault.instances) == 1  # cached: no second request


def test_vault_provider_custom_mount(vault: type[FakeVault], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSCODE_VAULT_MOUNT", "kv-transcode")
    vault.store[("kv-transcode", "API_KEY")] = {"value": "v"}
    assert get_secret("API_KEY") == "v"


def test_vault_provider_missing_path_or_field(vault: type[FakeVault]) -> None:
    with pytest.raises(SecretUnavailable) as err:
        get_secret("NOT_THERE")
    assert "NOT_THERE" in str(err.value)
    assert "vault kv put secret/NOT_THERE value=" in str(err.value)
    vault.store[("secret", "NO_FIELD")] = {"password": "p"}
    with pytest.raises(SecretUnavailable, match="NO_FIELD"):
        get_secret("NO_FIELD")
    assert get_secret("NO_FIELD", default="d") == "d"


def test_vault_provider_errors(vault: type[FakeVault], caplog: pytest.LogCaptureFixture) -> None:
    vault.fail_with = hvac_exc.Forbidden("permission denied")
    with caplog.at_level(logging.ERROR, logger="security.secrets"):
        with pytest.raises(SecretUnavailable, match="Forbidden"):
            get_secret("DB_PASSWORD")
    assert "DB_PASSWORD" in caplog.text
    assert get_secret("DB_PASSWORD", default="d") == "d"


def test_vault_provider_needs_address_and_token(vault: type[FakeVault], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(SecretUnavailable, match="VAULT_TOKEN"):
        get_secret("X")
    assert vault.instances == []
