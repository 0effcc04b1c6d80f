"""What a run read and wrote (``files_v1``), and rehashing those files on disk.

A run records raw data files, model weights, metrics, predictions and reports with their
paths, SHA-256 digests and sizes; its data set and splits are recorded by content digest only,
as data held in memory: they have no path, and :meth:`File.verify` refuses them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

__all__ = ["File", "FileCheck", "NotAFileError"]

#: How much of a file is read at a time while hashing.
_BLOCK = 1 << 20


class NotAFileError(ValueError):
    """Data the run held in memory (its data set, its splits): there is no file to rehash."""


@dataclass(frozen=True)
class File:
    """One file (or in-memory data entity) a run recorded."""

    #: The run.
    run_id: str
    #: What it is to the run: a raw file's role (``train-images``), ``dataset``, a split,
    #: ``model``, ``metrics``, ``predictions``, ``report``, ...
    role: str
    #: Its absolute path; None for data held in memory (the data set, the splits).
    path: Optional[str]
    #: Its SHA-256, as recorded.
    sha256: str
    #: ``raw``, ``dataset``, ``split``, ``model``, ``metrics``, ``predictions``, ``report``, ...
    kind: str
    #: Its size in bytes, as recorded; None for data held in memory.
    size: Optional[int]

    @property
    def on_disk(self) -> bool:
        """Whether it is a file (false for data held in memory)."""
        return self.path is not None

    def verify(self) -> "FileCheck":
        """Rehashes the file on disk (streamed) against the recorded size and SHA-256.

        Raises :class:`NotAFileError` for data held in memory, which has no file.
        """
        if self.path is None:
            raise NotAFileError(
                f"run {self.run_id}: {self.role} ({self.kind}, sha256 {self.sha256[:12]}) is data held in memory, "
                "not a file: there is nothing on disk to rehash"
            )
        path = Path(self.path)
        try:
            found_size = path.stat().st_size
            if self.size is not None and found_size != self.size:
                return FileCheck(self, "changed", found_size, None, f"size {self.size} recorded, {found_size} now")
            digest = hashlib.sha256()
            with path.open("rb") as file:
                for block in iter(lambda: file.read(_BLOCK), b""):
                    digest.update(block)
        except OSError as error:
            reason = "missing" if isinstance(error, FileNotFoundError) else f"unreadable: {error.strerror}"
            return FileCheck(self, "missing", None, None, reason)
        found = digest.hexdigest()
        if found != self.sha256:
            return FileCheck(self, "changed", found_size, found, f"sha256 {self.sha256} recorded, {found} now")
        return FileCheck(self, "ok", found_size, found, "")


@dataclass(frozen=True)
class FileCheck:
    """The outcome of rehashing one file: true when it still is what the run recorded."""

    #: The file as recorded (its expected ``size`` and ``sha256``).
    file: File
    #: ``ok``, ``changed`` (another size or digest) or ``missing`` (gone or unreadable), as
    #: ``host verify`` says.
    state: str
    #: The size found on disk; None when the file is missing.
    found_size: Optional[int]
    #: The digest found; None when the file is missing or its size already differs.
    found_sha256: Optional[str]
    #: What differs, for people ("" when ok).
    detail: str

    @property
    def ok(self) -> bool:
        """Whether the file is as recorded."""
        return self.state == "ok"

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        shown = f"{self.state} {self.file.role} {self.file.path}"
        return f"{shown}: {self.detail}" if self.detail else shown
