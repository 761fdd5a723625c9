"""The `local` media backend: files under MEDIA_DIR, served by the API itself."""

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from app.media.store import Delivery, MediaError, MediaStore, StorageUnavailable

# A full or read-only disk is an outage that passes; anything else is a bug.
_TRANSIENT = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EAGAIN}


class LocalStore(MediaStore):
    backend = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        """The file of a stored key; keys never leave the store's root."""
        candidate = (self.root / key).resolve()
        if not candidate.is_relative_to(self.root.resolve()):
            raise MediaError("invalid media key")
        return candidate

    def write(self, key: str, source: BinaryIO, mime_type: str) -> None:
        path = self.path(key)
        if path.exists():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a file.
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
                shutil.copyfileobj(source, handle)
            os.replace(handle.name, path)
        except OSError as error:
            if error.errno in _TRANSIENT:
                raise StorageUnavailable(f"media folder: {os.strerror(error.errno)}") from None
            raise

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def keys_under(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        root = self.root.resolve()
        return sorted(str(path.relative_to(root)) for path in folder.iterdir() if path.is_file())

    def delivery(self, key: str, *, mime_type: str, expires_in: int) -> Delivery:
        return Delivery(path=self.path(key))
