"""Fast first impressions: explorations cached by content, examples cached lazily.

:func:`cached` wraps an explore handler in ``gr.cache``: the key is the picture's bytes (not its
upload path), the model with its file stamp (a retrained checkpoint is a new key) and the view
settings. A hit is answered before the queue (Gradio probes cached handlers first), so a visitor
clicking an example someone explored before, or re-opening a view, waits for no pass and no
queue. The cache is shared by all visitors, which is safe because the key also holds whether the
asking visitor may see the model (another visitor's private run never hits).

:func:`lazy_examples` builds ``gr.Examples(cache_examples=True, cache_mode="lazy")`` for the
server's default model: the first click on an example computes and stores its answer on disk; every
later click, by anyone, reads it back. Gradio keys that cache by example position, not by model,
so those galleries are shown only while the default model is live (another model gets the plain
galleries, whose clicks go through the content cache), and their folder is named after the model's
fingerprint so a different default after a restart never reads an old answer.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr

from .shared import HUB

__all__ = ["cached", "content_key", "examples_cache_folder"]

# Gradio keeps cached example answers in a CSV file and reads them back with the csv module, whose
# default field limit (128 KiB) is below one atlas figure (~270 KB of plotly JSON for the small
# model): without this, the second click on a cached example fails with "field larger than field limit".
csv.field_size_limit(64 * 2**20)

MAX_ENTRIES = 16  # an exploration of the full-width model at 224 px holds ~5 MB of activations, its figures ~1 MB


def _file_digest(payload) -> str | None:
    path = payload if isinstance(payload, str) else payload.get("path") if isinstance(payload, dict) else None
    if not path:
        url = payload.get("url") if isinstance(payload, dict) else None
        return hashlib.sha256(url.encode()).hexdigest() if isinstance(url, str) and url.startswith("data:") else None
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(kwargs: dict) -> tuple:
    """What an exploration depends on. Anything unexpected (a missing file, a model this visitor may
    not load) gives a key that never repeats: the handler then runs and reports the problem itself."""
    values = dict(kwargs)
    if "args" in values:  # explore_on_change(image, *args)
        rest = list(values.pop("args"))
        model = rest[0] if rest else None
    else:
        model = values.get("model")
        rest = [v for k, v in values.items() if k != "image"]
    try:
        image = _file_digest(values.get("image"))
        return (image, HUB.stamp(model), repr(rest))  # stamp() raises for a model this visitor may not see
    except (OSError, ValueError, TypeError, AttributeError):
        return ("uncached", secrets.token_hex(8))


def cached(fn: Callable, max_size: int = MAX_ENTRIES) -> Callable:
    """``fn`` answered from a content-keyed ``gr.cache`` (hits skip the queue). Results are copied on
    the way out: Gradio's postprocessing pops ``"value"`` from a returned ``gr.update`` dict in
    place (``postprocess_update_dict`` in gradio/blocks.py), which would empty the cached one."""
    inner = gr.cache(fn, key=content_key, max_size=max_size)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = inner(*args, **kwargs)
        if isinstance(result, tuple):
            copied = [dict(item) if isinstance(item, dict) else item for item in result]
            return type(result)(*copied) if hasattr(result, "_fields") else tuple(copied)
        return dict(result) if isinstance(result, dict) else result

    wrapper.cache = inner.cache  # the attribute Gradio's queue looks for to probe the cache first
    return wrapper


def fingerprint(choice: str, extra: str = "") -> str:
    """A folder name for cached example answers: the model, its file stamp, and ``extra``."""
    return hashlib.sha256(f"{HUB.stamp(choice)}|{extra}".encode()).hexdigest()[:16]


@contextlib.contextmanager
def examples_cache_folder(choice: str, extra: str = "") -> Iterator[Path]:
    """Build ``gr.Examples`` inside this to keep their lazily cached answers under a folder named
    after the model's fingerprint (``GRADIO_EXAMPLES_CACHE``, read by Gradio when an Examples is made)."""
    base = Path(os.environ.get("GOOGLENET_EXAMPLES_CACHE", ".gradio/cached_examples"))
    folder = base / fingerprint(choice, extra)
    previous = os.environ.get("GRADIO_EXAMPLES_CACHE")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop("GRADIO_EXAMPLES_CACHE", None)
        else:
            os.environ["GRADIO_EXAMPLES_CACHE"] = previous
