"""Object storage on a local (or shared network) filesystem.

Used for single-host runs and tests. Writes go to a temporary file in the
destination directory and are moved into place with ``os.replace``, so a
concurrent reader (NGINX serving HLS, another task) sees the old object or
the new one, never a torn one.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from include.errors import ObjectNotFound, StorageKeyError

from .base import ObjectInfo, Storage, validate_key, validate_prefix

_CHUNK = 1024 * 1024
# '~' cannot occur in a valid key, so temp files can never be listed as objects
# or collide with one.
_TMP_PREFIX = ".~tmp-"
_FILE_MODE = 0o644


class LocalStorage(Storage):
    """Keys map to files under ``root``; nothing outside ``root`` is touched."""

    def __init__(self, root: str | Path) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- helpers -----------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        candidate = self.root / key
        # resolve() follows every symlink on the way, so a link anywhere in
        # the path that points outside the root is caught here.
        resolved = candidate.resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise StorageKeyError(f"storage key {key!r} resolves outside the storage root")
        return resolved

    def local_path(self, key: str) -> Path:
        return self._existing_file(key)

    def _existing_file(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(f"no object under key {key!r} in {self.root}")
        return path

    @contextmanager
    def _atomic_writer(self, dest: Path) -> Iterator[BinaryIO]:
        """Yield a temp file next to ``dest``; on success it replaces ``dest``."""
        for attempt in range(3):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=dest.parent)
                break
            except FileNotFoundError:
                # A concurrent delete_prefix pruned the empty directory between
                # mkdir and mkstemp; recreate it.
                if attempt == 2:
                    raise
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; readers (NGINX) need more
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _prune_empty_dirs(self, start: Path) -> None:
        directory = start
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return  # not empty (or gone): stop climbing
            directory = directory.parent

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        base_dir = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / base_dir if base_dir else self.root
        if not start.is_dir():
            return
        if base_dir and not start.resolve().is_relative_to(self.root):
            return
        # os.walk does not descend into symlinked directories by default, which
        # keeps listings inside the root.
        for dirpath, _dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    validate_key(key)
                except StorageKeyError:
                    continue  # temp files and foreign names are not objects
                if os.path.islink(os.path.join(dirpath, name)):
                    try:
                        self._path(key)
                    except StorageKeyError:
                        continue
                yield key

    # -- Storage -----------------------------------------------------------

    def put_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        dest = self._path(key)
        with open(path, "rb") as src, self._atomic_writer(dest) as out:
            shutil.copyfileobj(src, out, _CHUNK)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        dest = self._path(key)
        with self._atomic_writer(dest) as out:
            out.write(data)

    def get_file(self, key: str, path: str | Path) -> Path:
        src = self._existing_file(key)
        dest = Path(path)
        with open(src, "rb") as fh, self._atomic_writer(dest) as out:
            shutil.copyfileobj(fh, out, _CHUNK)
        return dest

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(f"no object under key {key!r} in {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._existing_file(key).stat().st_size

    def list(self, prefix: str = "") -> builtins.list[str]:
        validate_prefix(prefix)
        return sorted(self._iter_keys(prefix))

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            return  # a "folder" is not an object; deleting it is delete_prefix's job
        path.unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if prefix == "":
            raise StorageKeyError("refusing to delete with an empty prefix (that is everything)")
        count = 0
        parents: set[Path] = set()
        for key in self._iter_keys(prefix):
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            count += 1
            parents.add(path.parent)
        for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            self._prune_empty_dirs(directory)
        return count

    def copy(self, src_key: str, dst_key: str) -> None:
        src = self._existing_file(src_key)
        dest = self._path(dst_key)
        # Objects are only ever replaced (never written in place), so a hard
        # link is an exact, instant copy; fall back to bytes across devices.
        if not self._link_into(src, dest):
            with open(src, "rb") as fh, self._atomic_writer(dest) as out:
                shutil.copyfileobj(fh, out, _CHUNK)

    def move_file(self, key: str, path: str | Path, content_type: str | None = None) -> None:
        source = Path(path)
        dest = self._path(key)
        os.chmod(source, _FILE_MODE)
        if self._link_into(source, dest):
            source.unlink()
        else:
            super().move_file(key, source, content_type)

    def _link_into(self, source: Path, dest: Path) -> bool:
        """Atomically make ``dest`` another name of ``source``; False across filesystems."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            os.link(source, tmp)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                return False
            raise
        try:
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return True

    def stat(self, key: str) -> ObjectInfo:
        path = self._existing_file(key)
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        # Size comes from the bytes hashed, so the two always describe the
        # same version even if the file is replaced meanwhile.
        return ObjectInfo(key=key, size=size, etag_or_sha256=digest.hexdigest())

    def url_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def upload_stream(self, key: str, fileobj: BinaryIO, length: int = -1) -> None:
        dest = self._path(key)
        with self._atomic_writer(dest) as out:
            if length < 0:
                shutil.copyfileobj(fileobj, out, _CHUNK)
                return
            remaining = length
            while remaining > 0:
                chunk = fileobj.read(min(_CHUNK, remaining))
                if not chunk:
                    raise ValueError(
                        f"stream for {key!r} ended after {length - remaining} of {length} bytes"
                    )
                out.write(chunk)
                remaining -= len(chunk)
