"""Secrets from one configured provider, with a short in-process cache.

``TRANSCODE_SECRETS_PROVIDER`` picks where secrets live:

``env``
    ``os.environ[name]``. The default; fine for local runs and CI.
``vault``
    HashiCorp Vault KV v2 via ``hvac``. ``VAULT_ADDR`` and ``VAULT_TOKEN``
    come from the environment, the secret path is ``name`` and the value is
    its field ``value``; the mount is ``TRANSCODE_VAULT_MOUNT`` (``secret``).
``aws``
    AWS Secrets Manager via ``boto3`` (``SecretId=name``), region from
    ``TRANSCODE_S3_REGION``; ``TRANSCODE_SECRETS_ENDPOINT`` overrides the
    endpoint URL (e.g. a LocalStack/moto stand-in).

Values are cached for :data:`CACHE_TTL_S` seconds because DAG tasks and API
workers ask for the same credentials on every request and the remote
providers are rate limited. Secret values are never logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from include.config import get_settings
from include.errors import TranscodeError

log = logging.getLogger(__name__)

CACHE_TTL_S = 300.0
PROVIDERS = ("env", "vault", "aws")

__all__ = [
    "CACHE_TTL_S",
    "PROVIDERS",
    "SecretUnavailable",
    "clear_cache",
    "get_secret",
    "require_secret",
]


class SecretUnavailable(TranscodeError):
    """A secret is missing or its provider cannot be reached.

    Subclasses ``TranscodeError`` (not ``InputRejected``) so the orchestrator
    retries: a provider outage is usually transient.
    """


class _Missing(Exception):
    """The provider answered, and it has no such secret."""


# (provider, name) -> (expires_at_monotonic, value)
_cache: dict[tuple[str, str], tuple[float, str]] = {}
_cache_lock = threading.Lock()
# One lock per secret so concurrent first reads make a single provider call
# instead of N identical ones.
_fetch_locks: dict[tuple[str, str], threading.Lock] = {}
# Indirection so tests can move time forward without patching the time module.
_clock: Callable[[], float] = time.monotonic


def clear_cache() -> None:
    """Forget every cached value (after a rotation, and between tests)."""
    with _cache_lock:
        _cache.clear()
        _fetch_locks.clear()


def _from_env(name: str) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        raise _Missing(f"environment variable {name} is not set")
    return value


def _from_vault(name: str) -> str:
    import hvac  # imported lazily: only deployments that use Vault need it
    from hvac import exceptions as hvac_exc

    addr = os.environ.get("VAULT_ADDR")
    token = os.environ.get("VAULT_TOKEN")
    if not addr or not token:
        raise RuntimeError("VAULT_ADDR and VAULT_TOKEN must both be set for the vault provider")
    mount = os.environ.get("TRANSCODE_VAULT_MOUNT") or "secret"
    client = hvac.Client(url=addr, token=token)
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=name, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac_exc.InvalidPath as exc:
        raise _Missing(f"no secret at {mount}/{name} in Vault") from exc
    data = ((response or {}).get("data") or {}).get("data") or {}
    value = data.get("value")
    if not isinstance(value, str) or value == "":
        raise _Missing(f"Vault secret {mount}/{name} has no string field 'value'")
    return value


def _from_aws(name: str) -> str:
    import boto3  # imported lazily: only deployments that use AWS need it
    from botocore.exceptions import ClientError

    # botocore.parsers logs whole response bodies at DEBUG, which would put
    # the secret in the logs of any service run with DEBUG logging. Unless
    # someone set that logger's level on purpose, keep it at INFO.
    parsers_log = logging.getLogger("botocore.parsers")
    if parsers_log.level == logging.NOTSET:
        parsers_log.setLevel(logging.INFO)
    endpoint = os.environ.get("TRANSCODE_SECRETS_ENDPOINT") or None
    client = boto3.client(
        "secretsmanager", region_name=get_settings().s3_region, endpoint_url=endpoint
    )
    try:
        response = client.get_secret_value(SecretId=name)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise _Missing(f"no secret {name!r} in AWS Secrets Manager") from exc
        raise
    if response.get("SecretString") is not None:
        value = response["SecretString"]
    elif response.get("SecretBinary") is not None:
        value = bytes(response["SecretBinary"]).decode("utf-8")
    else:
        value = ""
    if value == "":
        raise _Missing(f"AWS secret {name!r} is empty")
    return value


_FETCHERS: dict[str, Callable[[str], str]] = {
    "env": _from_env,
    "vault": _from_vault,
    "aws": _from_aws,
}


def _hint(provider: str, name: str) -> str:
    if provider == "env":
        return f"export {name}=... in the service's environment (or .env)"
    if provider == "vault":
        mount = os.environ.get("TRANSCODE_VAULT_MOUNT") or "secret"
        return (
            f"write it with `vault kv put {mount}/{name} value=...` and check "
            "VAULT_ADDR/VAULT_TOKEN"
        )
    return (
        f"create it with `aws secretsmanager create-secret --name {name} "
        "--secret-string ...` and check the AWS credentials, region and "
        "TRANSCODE_SECRETS_ENDPOINT"
    )


def _lock_for(key: tuple[str, str]) -> threading.Lock:
    with _cache_lock:
        lock = _fetch_locks.get(key)
        if lock is None:
            lock = _fetch_locks[key] = threading.Lock()
        return lock


def _cached(key: tuple[str, str]) -> str | None:
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] > _clock():
            return hit[1]
        return None


def get_secret(name: str, default: str | None = None) -> str | None:
    """Return secret ``name`` from the configured provider.

    Returns ``default`` when the secret is missing or the provider fails and a
    default was given; otherwise raises :class:`SecretUnavailable`. Only real
    values are cached, so a secret created after a miss is seen at once.
    """
    if not name:
        raise ValueError("secret name must be a non-empty string")
    provider = get_settings().secrets_provider.strip().lower()
    fetch = _FETCHERS.get(provider)
    if fetch is None:
        raise SecretUnavailable(
            f"unknown TRANSCODE_SECRETS_PROVIDER {provider!r}; use one of {', '.join(PROVIDERS)}"
        )
    key = (provider, name)
    value = _cached(key)
    if value is not None:
        return value
    with _lock_for(key):
        # Another thread may have filled the cache while this one waited.
        value = _cached(key)
        if value is not None:
            return value
        try:
            value = fetch(name)
        except _Missing as exc:
            if default is not None:
                log.debug("secret %s not found via %s provider; using the default", name, provider)
                return default
            log.error("secret %s not found via %s provider: %s", name, provider, exc)
            raise SecretUnavailable(
                f"secret {name!r} is not set ({provider} provider: {exc}); {_hint(provider, name)}"
            ) from exc
        except Exception as exc:
            # Exception text from clients describes the request, never the
            # value (which we have not got), so it is safe to log.
            log.error(
                "reading secret %s via %s provider failed: %s: %s",
                name, provider, type(exc).__name__, exc,
            )
            if default is not None:
                return default
            raise SecretUnavailable(
                f"could not read secret {name!r} from the {provider} provider "
                f"({type(exc).__name__}: {exc}); {_hint(provider, name)}"
            ) from exc
        with _cache_lock:
            _cache[key] = (_clock() + CACHE_TTL_S, value)
        return value


def require_secret(name: str) -> str:
    """Like :func:`get_secret` without a default: a value, or SecretUnavailable."""
    value = get_secret(name)
    if value is None:  # unreachable unless a provider misbehaves; keeps types honest
        raise SecretUnavailable(f"secret {name!r} is not set; {_hint(get_settings().secrets_provider, name)}")
    return value
