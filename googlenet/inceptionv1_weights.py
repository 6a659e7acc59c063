"""lucent's published InceptionV1 weights (``--weights inceptionv1``): the torch hub cache, else
a download, checked before a byte of it is unpickled.

The file is ProGamerGov's conversion of TF's ``inception5h`` that ``lucent.modelzoo.inceptionv1(
pretrained=True)`` downloads (``model_urls["inceptionv1"]`` in lucent 0.1.8). Its publisher gives
no checksum, and this project was built offline, so there is no pinned hash to ship: a SHA-256
pinned in ``$GOOGLENET_INCEPTIONV1_SHA256`` is enforced; otherwise the hash of the first download
is written beside it (``inception5h.pth.sha256``) and every later load checks the cached file
against it. Either way the file is read with ``weights_only=True`` and loaded strictly into the
layout, so anything but InceptionV1's 116 tensors and shapes is refused.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["INCEPTIONV1_URL", "fetch_inceptionv1_state_dict", "cached_path", "sha256_of", "download"]

INCEPTIONV1_URL = "https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth"


def cached_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(INCEPTIONV1_URL)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dst: Path) -> None:
    """The real download (tests replace this): a HEAD probe that fails in seconds when offline,
    then torch.hub's resumable-safe download to a temporary name."""
    urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=5).close()
    torch.hub.download_url_to_file(url, str(dst), progress=True)


def fetch_inceptionv1_state_dict(download_ok: bool | None = None) -> dict[str, Tensor]:
    """lucent's InceptionV1 state dict (lucent's names). Raises
    :class:`googlenet.weights.WeightsUnavailable` saying why when it cannot be had, and
    :class:`googlenet.weights.CheckpointError` when a file fails its checksum."""
    from .convert import read_state_dict
    from .weights import CheckpointError, WeightsUnavailable

    if download_ok is None:
        download_ok = os.environ.get("GOOGLENET_OFFLINE", "") in ("", "0")
    path = cached_path()
    sidecar = path.with_name(path.name + ".sha256")
    pinned = os.environ.get("GOOGLENET_INCEPTIONV1_SHA256", "").strip().lower() or None
    if not path.exists():
        if not download_ok:
            raise WeightsUnavailable(f"{path.name} is not in {path.parent}, and downloads are off (GOOGLENET_OFFLINE=1)")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            download(INCEPTIONV1_URL, partial)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            partial.unlink(missing_ok=True)
            raise WeightsUnavailable(f"{path.name} is not cached and {INCEPTIONV1_URL} is unreachable: {error}") from None
        digest = sha256_of(partial)
        if pinned is not None and digest != pinned:
            partial.unlink(missing_ok=True)
            raise CheckpointError(f"{path.name}: downloaded SHA-256 {digest} is not the pinned {pinned}; not kept")
        os.replace(partial, path)
        sidecar.write_text(digest + "\n")
    digest = sha256_of(path)
    expected = pinned or (sidecar.read_text().strip() if sidecar.exists() else None)
    if expected is not None and digest != expected:
        raise CheckpointError(f"{path}: SHA-256 {digest} differs from {expected} recorded at download: damaged or replaced")
    return read_state_dict(path)
