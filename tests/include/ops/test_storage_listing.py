"""Storage.sizes() and Storage.inventory(), which retention and the backup
manifest rely on, on both backends. STAND-IN: the S3 endpoint is moto in
server mode (tests/s3server.py); the real minio client talks to it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from include.storage import Storage
from include.storage.local import LocalStorage
from include.storage.s3 import S3Storage
from tests.s3server import s3_credentials, s3_endpoint  # noqa: F401 - fixture


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    access, secret = s3_credentials()
    return S3Storage(f"tf-ops-{uuid.uuid4().hex[:16]}", endpoint, "us-east-1", endpoint.startswith("https"), access, secret)


def test_sizes_and_inventory_match_stat(storage: Storage) -> None:
    objects = {
        "processed/j1/hls/master.m3u8": b"#EXTM3U\n",
        "processed/j1/hls/720p/seg_00000.m4s": b"x" * 70_000,
        "processed/j10/poster.jpg": b"jpeg",
        "sources/j1/clip.mp4": b"source" * 10,
    }
    for key, data in objects.items():
        storage.put_bytes(key, data)
    assert storage.sizes("processed/j1/") == {
        "processed/j1/hls/master.m3u8": 8, "processed/j1/hls/720p/seg_00000.m4s": 70_000,
    }  # fmt: skip
    assert storage.sizes("nothing/") == {}
    inventory = storage.inventory("processed/")
    assert [i.key for i in inventory] == sorted(k for k in objects if k.startswith("processed/"))
    assert inventory == [storage.stat(i.key) for i in inventory], "same fingerprints as stat()"
    storage.put_bytes("processed/j10/poster.jpg", b"changed")
    assert storage.inventory("processed/j10/")[0].etag_or_sha256 != inventory[-1].etag_or_sha256
