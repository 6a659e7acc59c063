"""A ``.zip`` of an image folder, extracted safely into the runs area.

The archive is trusted for nothing but the bytes of its pictures. Before anything is written,
every entry is checked, and the whole archive is refused with a message naming the entry when
one of them
  * has ``..`` among its parts or an absolute path (it would land outside the folder);
  * is a symbolic link (it could point anywhere later);
  * expands more than :data:`MAX_RATIO` times (a zip bomb: pictures are already compressed, a
    PNG or JPEG deflates to about 1×);
and when the pictures together exceed :data:`MAX_BYTES` uncompressed or :data:`MAX_FILES`
files. Entries that are not pictures (by name ending) are skipped and counted; permissions,
times and extra fields are ignored. While writing, each entry may produce no more bytes than
its header declared, so a header that lies about sizes is caught too. Extraction goes into a
temporary folder renamed into place when complete; an archive extracted before (same SHA-256)
is reused.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from googlenet.datasets.pictures import image_suffixes

from ..weights import runs_dir
from .base import DataError

__all__ = ["Extracted", "extract_zip", "MAX_BYTES", "MAX_FILES", "MAX_RATIO", "datasets_dir"]

MAX_BYTES = 4 * 2**30  # 4 GiB: ~80,000 photos of 50 KB; larger sets belong in a server folder
MAX_FILES = 100_000
MAX_RATIO = 100  # PNG and JPEG deflate to ~1×; even flat BMPs rarely pass 20×
_RATIO_FLOOR = 2**20  # entries under 1 MiB cannot bomb whatever their ratio
_COMPLETE = ".extracted"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Extracted:
    """Where the pictures are, how many, and what was skipped (one message per kind)."""

    folder: Path  # the folder holding the class subfolders (or train/ and val/)
    pictures: int
    skipped: tuple[str, ...]


def datasets_dir() -> Path:
    """Where uploaded archives are extracted: ``<runs>/datasets``."""
    return runs_dir() / "datasets"


def extract_zip(
    path: str | os.PathLike,
    into: str | os.PathLike | None = None,
    max_bytes: int = MAX_BYTES,
    max_files: int = MAX_FILES,
    max_ratio: float = MAX_RATIO,
    admit: Callable[[Path, int], None] | None = None,
) -> Extracted:
    """Check and extract the zip at ``path`` into ``into`` (default: a folder named after the
    archive and its hash under :func:`datasets_dir`); raise :class:`DataError` if it is refused.

    ``admit(folder, bytes)`` is called once the entries are checked and before anything is
    written, with the bytes the pictures will take; it refuses by raising (a public server holds
    them against the visitor's upload quota)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"zip file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path.name} is not a zip archive")
    digest = _sha256(path)
    target = Path(into) if into is not None else datasets_dir() / f"{_safe_stem(path.stem)}-{digest[:12]}"
    try:
        with zipfile.ZipFile(path) as archive:
            pictures, skipped = _plan(archive, path.name, max_bytes, max_files, max_ratio)
            if admit is not None:
                admit(target, sum(info.file_size for info, _ in pictures))
            if not (target / _COMPLETE).is_file():
                _extract(archive, pictures, target, path.name, max_bytes)
    except zipfile.BadZipFile as error:
        raise DataError(f"{path.name} is a damaged zip archive ({error})") from None
    return Extracted(_dataset_root(target), len(pictures), skipped)


def _plan(archive: zipfile.ZipFile, name: str, max_bytes: int, max_files: int, max_ratio: float):
    """The picture entries to extract and the skip messages, or a refusal."""
    suffixes = image_suffixes()
    pictures: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    not_pictures: list[str] = []
    encrypted: list[str] = []
    total = 0
    for info in archive.infolist():
        parts = _checked_parts(info.filename, name)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"refused {name}: entry {info.filename!r} is a symbolic link (links in archives are refused)")
        if info.is_dir() or not parts:
            continue
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue  # .DS_Store, AppleDouble files: metadata of the machine that zipped it
        if os.path.splitext(parts[-1])[1].lower() not in suffixes:
            not_pictures.append(info.filename)
            continue
        if info.flag_bits & 0x1:
            encrypted.append(info.filename)
            continue
        if info.file_size > _RATIO_FLOOR and info.file_size > max_ratio * max(info.compress_size, 1):
            raise DataError(
                f"refused {name}: entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}× "
                f"({info.file_size / 2**20:.0f} MiB from {info.compress_size / 2**10:.0f} KiB); entries expanding more "
                f"than {max_ratio:.0f}× are refused as a possible zip bomb"
            )
        total += info.file_size
        pictures.append((info, parts))
    if len(pictures) > max_files:
        raise DataError(f"refused {name}: {len(pictures):,} pictures; the limit is {max_files:,} files per archive")
    if total > max_bytes:
        raise DataError(f"refused {name}: {total / 2**30:.2f} GiB uncompressed; the limit is {max_bytes / 2**30:.2f} GiB")
    if not pictures:
        raise DataError(f"{name} holds no pictures (PNG, JPEG, …) in class folders")
    skipped = []
    if not_pictures:
        examples = ", ".join(not_pictures[:3]) + (", …" if len(not_pictures) > 3 else "")
        skipped.append(f"skipped {len(not_pictures)} entries of {name} that are not pictures ({examples})")
    if encrypted:
        skipped.append(f"skipped {len(encrypted)} encrypted entries of {name} ({', '.join(encrypted[:3])})")
    return pictures, tuple(skipped)


def _checked_parts(filename: str, name: str) -> tuple[str, ...]:
    """The path parts of an entry, refusing absolute paths and ``..`` (with either slash)."""
    if filename.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", filename):
        raise DataError(f"refused {name}: entry {filename!r} has an absolute path (entries must stay inside the archive's folder)")
    parts = tuple(p for p in re.split(r"[\\/]+", filename) if p not in ("", "."))
    if ".." in parts:
        raise DataError(f"refused {name}: entry {filename!r} would be written outside the extraction folder ('..' in its path)")
    if any("\x00" in p for p in parts):
        raise DataError(f"refused {name}: entry {filename!r} has a NUL character in its name")
    return parts


def _extract(archive: zipfile.ZipFile, pictures, target: Path, name: str, max_bytes: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    root = partial.resolve()
    written = 0
    try:
        for info, parts in pictures:
            destination = partial.joinpath(*parts)
            if not destination.resolve().is_relative_to(root):  # belt and braces after _checked_parts
                raise DataError(f"refused {name}: entry {info.filename!r} resolves outside the extraction folder")
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                raise DataError(f"refused {name}: entry {info.filename!r} appears twice") from None
            with os.fdopen(fd, "wb") as out, archive.open(info) as source:
                size = 0
                while chunk := source.read(_CHUNK):
                    size += len(chunk)
                    written += len(chunk)
                    if size > info.file_size:
                        raise DataError(f"refused {name}: entry {info.filename!r} holds more bytes than its header declares")
                    if written > max_bytes:
                        raise DataError(f"refused {name}: more than {max_bytes / 2**30:.2f} GiB uncompressed")
                    out.write(chunk)
        (partial / _COMPLETE).write_text(f"{name}\n")
        try:
            partial.rename(target)
        except OSError:
            if not (target / _COMPLETE).is_file():  # not another process finishing the same archive first
                raise
    except OSError as error:
        raise DataError(f"could not extract {name} into {target}: {error}") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _dataset_root(folder: Path) -> Path:
    """The folder holding the classes: archives often wrap everything in one top folder."""
    for _ in range(3):
        entries = [e for e in folder.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in ("train", "val", "test"):
            inner = [e for e in entries[0].iterdir() if e.is_dir()]
            if inner:
                folder = entries[0]
                continue
        break
    return folder


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _safe_stem(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:60] or "archive"
