"""Storage backends against real components.

Every behavioural test runs twice: on ``LocalStorage`` in a temp directory and
on ``S3Storage`` through the real ``minio`` client against an S3 endpoint.
STAND-IN: that endpoint is moto's S3 server (see ``tests/s3server.py``)
because no MinIO server can be installed here; set
``TRANSCODE_TEST_S3_ENDPOINT`` to run the same tests on a real MinIO.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from pathlib import Path

import pytest

from include.config import get_settings
from include.errors import ObjectNotFound, StorageKeyError
from include.storage import ObjectInfo, Storage, clear_storage_cache, get_storage, validate_key
from include.storage.local import LocalStorage
from include.storage.s3 import S3Storage, split_endpoint
from security.secrets import clear_cache as clear_secret_cache
from tests.s3server import s3_credentials, s3_endpoint  # noqa: F401 - fixture

MiB = 1024 * 1024


def _clear_caches() -> None:
    get_settings.cache_clear()
    clear_storage_cache()
    clear_secret_cache()


@pytest.fixture(autouse=True)
def _fresh_caches():
    _clear_caches()
    yield
    _clear_caches()


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    monkeypatch.setenv("TRANSCODE_VAR_DIR", str(tmp_path / "var"))
    if request.param == "local":
        monkeypatch.setenv("TRANSCODE_STORAGE_URL", (tmp_path / "store").as_uri())
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        access, secret = s3_credentials()
        monkeypatch.setenv("TRANSCODE_STORAGE_URL", f"s3://tf-test-{uuid.uuid4().hex[:16]}")
        monkeypatch.setenv("TRANSCODE_S3_ENDPOINT", endpoint)
        monkeypatch.setenv("TRANSCODE_S3_SECURE", "1" if endpoint.startswith("https") else "0")
        monkeypatch.setenv("TRANSCODE_S3_REGION", "us-east-1")
        monkeypatch.setenv("TRANSCODE_SECRETS_PROVIDER", "env")
        monkeypatch.setenv("TRANSCODE_S3_ACCESS_KEY", access)
        monkeypatch.setenv("TRANSCODE_S3_SECRET_KEY", secret)
    _clear_caches()
    store = get_storage()
    assert isinstance(store, LocalStorage if request.param == "local" else S3Storage)
    return store


class PatternStream:
    """A file-like stream of ``total`` deterministic bytes, generated on read.

    Stands for an upload body that must not be held in memory at once.
    """

    def __init__(self, total: int, fail_after: int | None = None) -> None:
        self.total = total
        self.pos = 0
        self.fail_after = fail_after
        self.max_read = 0

    @staticmethod
    def block(index: int) -> bytes:
        return hashlib.sha256(index.to_bytes(8, "big")).digest() * 2048  # 64 KiB

    def read(self, n: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise OSError("client went away")
        if n is None or n < 0:
            n = self.total - self.pos
        n = min(n, self.total - self.pos)
        self.max_read = max(self.max_read, n)
        out = bytearray()
        while len(out) < n:
            blk_size = 64 * 1024
            index, offset = divmod(self.pos + len(out), blk_size)
            out += self.block(index)[offset : offset + n - len(out)]
        self.pos += n
        return bytes(out)

    @classmethod
    def sha256(cls, total: int) -> str:
        digest = hashlib.sha256()
        stream = cls(total)
        while chunk := stream.read(MiB):
            digest.update(chunk)
        return digest.hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            digest.update(chunk)
    return digest.hexdigest()


# -- round trips -------------------------------------------------------------


def test_bytes_round_trip(storage: Storage) -> None:
    key = "processed/job-1/hls/master.m3u8"
    assert not storage.exists(key)
    storage.put_bytes(key, b"#EXTM3U\n")
    assert storage.exists(key)
    assert storage.get_bytes(key) == b"#EXTM3U\n"
    assert storage.size(key) == 8
    storage.put_bytes(key, b"#EXTM3U\n#EXT-X-VERSION:7\n")  # overwrite
    assert storage.get_bytes(key) == b"#EXTM3U\n#EXT-X-VERSION:7\n"


def test_empty_object(storage: Storage) -> None:
    storage.put_bytes("empty.bin", b"")
    assert storage.exists("empty.bin")
    assert storage.get_bytes("empty.bin") == b""
    assert storage.size("empty.bin") == 0


def test_file_round_trip_creates_parent_dirs(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir()
    payload = os.urandom(3 * MiB + 17)
    src.write_bytes(payload)
    storage.put_file("sources/job-2/clip.mp4", src, content_type="video/mp4")

    dest = tmp_path / "out" / "deep" / "er" / "clip.mp4"
    assert storage.get_file("sources/job-2/clip.mp4", dest) == dest
    assert dest.read_bytes() == payload
    assert storage.size("sources/job-2/clip.mp4") == len(payload)
    assert [p.name for p in dest.parent.iterdir()] == ["clip.mp4"]  # no partial files left


def test_missing_objects_raise_object_not_found(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("nope/missing.bin")
    with pytest.raises(ObjectNotFound):
        storage.get_file("nope/missing.bin", tmp_path / "x.bin")
    with pytest.raises(ObjectNotFound):
        storage.size("nope/missing.bin")
    with pytest.raises(ObjectNotFound):
        storage.stat("nope/missing.bin")
    with pytest.raises(ObjectNotFound):
        storage.copy("nope/missing.bin", "nope/copy.bin")
    assert not storage.exists("nope/copy.bin")


def test_a_folder_is_not_an_object(storage: Storage) -> None:
    storage.put_bytes("dir/child.txt", b"x")
    assert not storage.exists("dir")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("dir")


# -- listing and deletion ----------------------------------------------------


def test_list_is_recursive_sorted_and_prefix_filtered(storage: Storage) -> None:
    keys = [
        "processed/j1/hls/master.m3u8",
        "processed/j1/hls/720p/seg_00001.m4s",
        "processed/j1/hls/720p/init.mp4",
        "processed/j1/poster.jpg",
        "processed/j10/poster.jpg",
        "sources/j1/in.mp4",
    ]
    for key in keys:
        storage.put_bytes(key, key.encode())

    assert storage.list() == sorted(keys)
    assert storage.list("") == sorted(keys)
    assert storage.list("processed/j1/") == sorted(k for k in keys if k.startswith("processed/j1/"))
    # S3 semantics: a prefix is a string prefix, not a folder.
    assert storage.list("processed/j1") == sorted(k for k in keys if k.startswith("processed/j1"))
    assert storage.list("processed/j1/hls/720p/seg") == ["processed/j1/hls/720p/seg_00001.m4s"]
    assert storage.list("does-not-exist/") == []


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put_bytes("a/b.txt", b"1")
    storage.delete("a/b.txt")
    assert not storage.exists("a/b.txt")
    storage.delete("a/b.txt")  # again: no error
    storage.delete("never/existed.txt")
    assert storage.list() == []


def test_delete_prefix(storage: Storage) -> None:
    for key in ["p/j1/a", "p/j1/sub/b", "p/j1/sub/c", "p/j2/a", "q/j1/a"]:
        storage.put_bytes(key, b"x")
    assert storage.delete_prefix("p/j1/") == 3
    assert storage.list() == ["p/j2/a", "q/j1/a"]
    assert storage.delete_prefix("p/j1/") == 0
    assert storage.delete_prefix("zzz/") == 0
    with pytest.raises(StorageKeyError):
        storage.delete_prefix("")
    # the store keeps working where the deleted tree used to be
    storage.put_bytes("p/j1/sub/again", b"y")
    assert storage.get_bytes("p/j1/sub/again") == b"y"


# -- copy and stat -----------------------------------------------------------


def test_copy(storage: Storage) -> None:
    storage.put_bytes("src/one.bin", b"payload-1")
    storage.copy("src/one.bin", "dst/nested/two.bin")
    assert storage.get_bytes("dst/nested/two.bin") == b"payload-1"
    assert storage.get_bytes("src/one.bin") == b"payload-1"
    storage.put_bytes("src/one.bin", b"changed")  # copies are independent
    assert storage.get_bytes("dst/nested/two.bin") == b"payload-1"


def test_move_file_stores_and_removes_the_scratch_file(storage: Storage, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch" / "seg.m4s"
    scratch.parent.mkdir()
    scratch.write_bytes(b"segment-bytes")
    storage.move_file("moved/seg.m4s", scratch)
    assert not scratch.exists()
    assert storage.get_bytes("moved/seg.m4s") == b"segment-bytes"
    storage.copy("moved/seg.m4s", "published/seg.m4s")
    storage.put_bytes("moved/seg.m4s", b"replaced")  # a linked copy must not follow
    assert storage.get_bytes("published/seg.m4s") == b"segment-bytes"


def test_stat(storage: Storage) -> None:
    data = b"hello stat"
    storage.put_bytes("s/obj.txt", data)
    info = storage.stat("s/obj.txt")
    assert isinstance(info, ObjectInfo)
    assert info.key == "s/obj.txt"
    assert info.size == len(data)
    assert info.etag_or_sha256
    if isinstance(storage, LocalStorage):
        assert info.etag_or_sha256 == hashlib.sha256(data).hexdigest()
    else:
        # Single-part uploads have the MD5 as ETag on S3 and MinIO.
        assert info.etag_or_sha256 == hashlib.md5(data).hexdigest()  # noqa: S324
    storage.put_bytes("s/obj.txt", b"other content")
    assert storage.stat("s/obj.txt").etag_or_sha256 != info.etag_or_sha256


def test_url_for(storage: Storage) -> None:
    url = storage.url_for("processed/j1/poster.jpg")
    if isinstance(storage, LocalStorage):
        assert url == (storage.root / "processed/j1/poster.jpg").as_uri()
        assert url.startswith("file:///")
    else:
        assert isinstance(storage, S3Storage)
        assert url == f"s3://{storage.bucket}/processed/j1/poster.jpg"


# -- streams -----------------------------------------------------------------


def test_upload_stream_20_mb_unknown_length(storage: Storage, tmp_path: Path) -> None:
    total = 20 * MiB + 12345  # not a multiple of any part size
    stream = PatternStream(total)
    storage.upload_stream("sources/big/upload.bin", stream, length=-1)
    assert storage.size("sources/big/upload.bin") == total
    dest = storage.get_file("sources/big/upload.bin", tmp_path / "big.bin")
    assert _sha256_file(dest) == PatternStream.sha256(total)
    # bounded memory: the backend never asked for the whole stream at once
    assert stream.max_read <= 16 * MiB + 1


def test_upload_stream_known_length(storage: Storage) -> None:
    total = 6 * MiB + 1
    storage.upload_stream("s/known.bin", PatternStream(total), length=total)
    assert storage.size("s/known.bin") == total


def test_upload_stream_failure_publishes_nothing(storage: Storage) -> None:
    storage.put_bytes("s/keep.bin", b"old")
    with pytest.raises(Exception):  # noqa: B017 - the stream's own error, whatever wraps it
        storage.upload_stream("s/keep.bin", PatternStream(40 * MiB, fail_after=18 * MiB), length=-1)
    assert storage.get_bytes("s/keep.bin") == b"old"
    with pytest.raises(Exception):  # noqa: B017
        storage.upload_stream("s/short.bin", PatternStream(100), length=200)
    assert not storage.exists("s/short.bin")
    assert storage.list("s/") == ["s/keep.bin"]


# -- key validation ----------------------------------------------------------

BAD_KEYS = [
    pytest.param("../etc/passwd", id="dotdot"),
    pytest.param("a/../../etc/passwd", id="inner-dotdot"),
    pytest.param("/abs", id="absolute"),
    pytest.param("a//b", id="empty-segment"),
    pytest.param("a/./b", id="dot-segment"),
    pytest.param("a/b/", id="trailing-slash"),
    pytest.param("", id="empty"),
    pytest.param("a\x00b", id="nul"),
    pytest.param("a\\b", id="backslash"),
    pytest.param("..\\..\\windows", id="backslash-dotdot"),
    pytest.param("a/b c", id="space"),
    pytest.param("a/é", id="non-ascii"),
    pytest.param("x" * 1025, id="over-long"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(StorageKeyError):
        validate_key(key)


def test_validate_key_accepts_and_limits() -> None:
    for key in ["a", "processed/j-1/hls/720p/seg_00001.m4s", ".hidden", "a..b/c", "x" * 1024]:
        assert validate_key(key) == key
    with pytest.raises(StorageKeyError):
        validate_key(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_every_method_validates_keys(storage: Storage, key: str, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    storage.put_bytes("ok/key", b"x")
    calls = [
        lambda: storage.put_file(key, src),
        lambda: storage.put_bytes(key, b"x"),
        lambda: storage.get_file(key, tmp_path / "o.bin"),
        lambda: storage.get_bytes(key),
        lambda: storage.exists(key),
        lambda: storage.size(key),
        lambda: storage.delete(key),
        lambda: storage.copy(key, "ok/copy"),
        lambda: storage.copy("ok/key", key),
        lambda: storage.stat(key),
        lambda: storage.url_for(key),
        lambda: storage.upload_stream(key, PatternStream(1)),
    ]
    if key and not key.endswith("/"):  # "" and "a/b/" are valid listing prefixes
        calls += [lambda: storage.list(key), lambda: storage.delete_prefix(key)]
    for call in calls:
        with pytest.raises(StorageKeyError):
            call()
    assert storage.list() == ["ok/key"]


# -- local-only behaviour ----------------------------------------------------


def test_local_refuses_symlink_escaping_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret")
    store = LocalStorage(tmp_path / "root")
    (store.root / "evil").symlink_to(outside, target_is_directory=True)
    (store.root / "link.txt").symlink_to(outside / "secret.txt")

    for key in ["evil/secret.txt", "link.txt"]:
        with pytest.raises(StorageKeyError):
            store.get_bytes(key)
        with pytest.raises(StorageKeyError):
            store.exists(key)
    with pytest.raises(StorageKeyError):
        store.put_bytes("evil/planted.txt", b"x")
    with pytest.raises(StorageKeyError):
        store.copy("link.txt", "inside.txt")
    assert store.delete_prefix("evil/") == 0  # never follows the link out
    assert not (outside / "planted.txt").exists()
    assert (outside / "secret.txt").read_text() == "top secret"
    assert store.list() == []


def test_local_symlink_inside_root_is_allowed(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    store.put_bytes("real/a.txt", b"a")
    (store.root / "alias").symlink_to(store.root / "real", target_is_directory=True)
    assert store.get_bytes("alias/a.txt") == b"a"


def test_local_writes_are_atomic(tmp_path: Path) -> None:
    """A concurrent reader sees the whole old or the whole new object, never a mix."""
    store = LocalStorage(tmp_path / "root")
    versions = [b"a" * (1 * MiB), b"b" * (2 * MiB)]
    store.put_bytes("hls/master.m3u8", versions[0])
    stop = threading.Event()
    seen: set[bytes] = set()
    torn: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = store.get_bytes("hls/master.m3u8")
            if data not in versions:
                torn.append(len(data))
            seen.add(data[:1])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(60):
            store.put_bytes("hls/master.m3u8", versions[i % 2])
    finally:
        stop.set()
        thread.join()
    assert torn == []
    assert seen  # the reader really ran
    # no temp files left behind, and none ever listed
    assert [p.name for p in (store.root / "hls").iterdir()] == ["master.m3u8"]
    assert store.list() == ["hls/master.m3u8"]


def test_local_failed_write_keeps_old_object(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "root")
    store.put_bytes("a/obj.bin", b"old")
    with pytest.raises(OSError):
        store.upload_stream("a/obj.bin", PatternStream(4 * MiB, fail_after=2 * MiB))
    assert store.get_bytes("a/obj.bin") == b"old"
    assert [p.name for p in (store.root / "a").iterdir()] == ["obj.bin"]


def test_local_files_are_world_readable(tmp_path: Path) -> None:
    # NGINX serves HLS straight from local storage under another user.
    store = LocalStorage(tmp_path / "root")
    store.put_bytes("hls/seg.m4s", b"x")
    assert (store.root / "hls/seg.m4s").stat().st_mode & 0o777 == 0o644


# -- get_storage -------------------------------------------------------------


def test_get_storage_caches_per_url(tmp_path: Path) -> None:
    url = (tmp_path / "s").as_uri()
    first = get_storage(url)
    assert get_storage(url) is first
    assert get_storage((tmp_path / "other").as_uri()) is not first


def test_get_storage_default_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSCODE_STORAGE_URL", (tmp_path / "from-env").as_uri())
    _clear_caches()
    store = get_storage()
    assert isinstance(store, LocalStorage)
    assert store.root == (tmp_path / "from-env").resolve()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/x",
        "relative/path",
        "file://relative/path",
        "file:///",
        "s3://",
        "s3://Bad_Bucket",
        "s3://bucket/with/prefix",
        "gs://bucket",
    ],
)
def test_get_storage_rejects_bad_urls(url: str) -> None:
    with pytest.raises(ValueError) as err:
        get_storage(url)
    assert url in str(err.value)


def test_s3_storage_reads_credentials_from_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSCODE_SECRETS_PROVIDER", "env")
    monkeypatch.delenv("TRANSCODE_S3_ACCESS_KEY", raising=False)
    monkeypatch.setenv("TRANSCODE_S3_SECRET_KEY", "s")
    monkeypatch.setenv("TRANSCODE_S3_ENDPOINT", "http://127.0.0.1:9")
    _clear_caches()
    from security.secrets import SecretUnavailable

    with pytest.raises(SecretUnavailable, match="TRANSCODE_S3_ACCESS_KEY"):
        get_storage("s3://some-bucket")


def test_split_endpoint() -> None:
    assert split_endpoint("minio:9000", False) == ("minio:9000", False)
    assert split_endpoint("http://minio:9000", True) == ("minio:9000", False)
    assert split_endpoint("https://s3.example.com/", False) == ("s3.example.com", True)
    with pytest.raises(ValueError):
        split_endpoint("http://minio:9000/path", False)
