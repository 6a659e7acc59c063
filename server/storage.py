"""Uploaded pictures on a public server: a per-visitor quota and a total cap with the oldest evicted.

Gradio keeps every uploaded file in its cache (content-addressed: the same picture twice is one
file) before a handler sees it; ``gr.Blocks(delete_cache=…)`` sweeps files past the retention.
This ledger adds what the cache lacks: each visitor's uploads within the retention window count
against a quota (a picture past it is deleted and refused with the quota named), and past a total
cap the oldest uploads (anyone's) are deleted first. The app's own example pictures are not
uploads and are never counted. (Checkpoints have their own rules in ``server/hub.py``.)

A training .zip is extracted into the runs area, where no cache sweep reaches: its unpacked bytes
are reserved against the same quota and cap before anything is written, and stay counted while
the server runs (a run may be reading the folder, so it is never evicted). Without this one
visitor could fill the disk with 50 MB zips that each unpack to a gigabyte.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

from explain import ImageError

__all__ = ["PictureLedger"]


class _Upload(NamedTuple):
    owner: str
    size: int
    at: float
    pinned: bool = False  # an extracted dataset: never forgotten or evicted


class PictureLedger:
    """Counts uploaded pictures per visitor; refuses past the quota, evicts past the cap."""

    def __init__(self, quota_bytes: int | None, total_bytes: int | None, retention_s: float | None) -> None:
        self.quota_bytes, self.total_bytes, self.retention_s = quota_bytes, total_bytes, retention_s
        self._uploads: OrderedDict[str, _Upload] = OrderedDict()  # path → upload, oldest first
        self._lock = threading.Lock()

    def charge(self, path: str | Path, owner: str) -> None:
        """Count the picture at ``path`` for ``owner`` (once per file); ImageError past the quota."""
        path = Path(path)
        key = str(path.resolve())
        now = time.time()
        with self._lock:
            self._forget(now)
            if key in self._uploads:
                return
            size = path.stat().st_size
            used = self._used_by(owner)
            if self.quota_bytes is not None and used + size > self.quota_bytes:
                path.unlink(missing_ok=True)
                hours = f"{self.retention_s / 3600:g} hours" if self.retention_s else "a while"
                raise ImageError(
                    f"upload refused: your pictures would take {(used + size) / 2**20:.1f} MB, over the per-visitor quota of "
                    f"{self.quota_bytes / 2**20:g} MB (GOOGLENET_UPLOAD_QUOTA_MB); uploads are counted for {hours}. "
                    "Pick an example, or come back later."
                )
            self._uploads[key] = _Upload(owner, size, now)
            self._evict(keep=key)

    def reserve(self, key: str | Path, size: int, owner: str, what: str) -> None:
        """Count ``size`` bytes that ``what`` will take at ``key`` for ``owner`` (once per key, pinned:
        see the module docstring). ImageError past the quota, or when the total cap cannot be met
        even after evicting every picture (then nothing is evicted)."""
        key = str(Path(key).resolve())
        now = time.time()
        with self._lock:
            self._forget(now)
            if key in self._uploads:
                return
            used = self._used_by(owner)
            if self.quota_bytes is not None and used + size > self.quota_bytes:
                raise ImageError(
                    f"{what} unpacks to {_size(size)}, and with your other uploads ({_size(used)}) that is over the "
                    f"per-visitor quota of {_size(self.quota_bytes)} (GOOGLENET_UPLOAD_QUOTA_MB). Train on one of the "
                    "datasets offered, or zip fewer pictures."
                )
            pinned = sum(u.size for u in self._uploads.values() if u.pinned)
            if self.total_bytes is not None and pinned + size > self.total_bytes:
                raise ImageError(
                    f"{what} unpacks to {_size(size)}, and this server's space for uploaded datasets "
                    f"({_size(self.total_bytes)}, GOOGLENET_UPLOAD_TOTAL_MB) is taken by other uploads. "
                    "Train on one of the datasets offered."
                )
            self._uploads[key] = _Upload(owner, size, now, pinned=True)
            self._evict(keep=key)

    def used(self, owner: str) -> int:
        with self._lock:
            return self._used_by(owner)

    def _used_by(self, owner: str) -> int:  # with the lock held
        return sum(u.size for u in self._uploads.values() if u.owner == owner)

    def _forget(self, now: float) -> None:
        """Uploads past the retention no longer count (Gradio's cache sweep deletes them)."""
        if self.retention_s is None:
            return
        for key in [k for k, u in self._uploads.items() if now - u.at > self.retention_s and not u.pinned]:
            del self._uploads[key]

    def _evict(self, keep: str) -> None:
        if self.total_bytes is None:
            return
        total = sum(u.size for u in self._uploads.values())
        for key in list(self._uploads):
            if total <= self.total_bytes:
                break
            if key == keep or self._uploads[key].pinned:
                continue
            total -= self._uploads.pop(key).size
            Path(key).unlink(missing_ok=True)


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"
