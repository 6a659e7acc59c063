"""What every tab shares: the model hub and the training job of this server, the turning of expected
failures into clear messages, the raw upload, the banner, and named outputs."""

from __future__ import annotations

import base64
import functools
import logging
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from explain import ImageError
from explain.hub import ModelHub
from googlenet.data import DataError
from googlenet.jobs import JobBusy, TrainingJob
from googlenet.train import TrainingError
from googlenet.weights import CheckpointError

try:  # Hugging Face ZeroGPU: functions that use the GPU must be decorated; a no-op elsewhere.
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(fn):
        return fn


__all__ = [
    "ASSETS",
    "HUB",
    "JOB",
    "TOP_CLASS",
    "gpu",
    "user_errors",
    "image_input",
    "banner",
    "model_choices_update",
    "examples",
    "outputs",
    "unchanged",
]

log = logging.getLogger("googlenet-explorer")
ASSETS = Path(__file__).resolve().parent.parent / "assets"
HUB = ModelHub()
JOB = TrainingJob()
USER_ERRORS = (ImageError, CheckpointError, DataError, TrainingError, JobBusy, ValueError, FileNotFoundError)
TOP_CLASS = "(top class)"


def user_errors(fn):
    """Turn expected failures into a clear message for the UI and API; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as error:
            raise gr.Error(str(error), print_exception=False) from None
        except Exception as error:  # a bug: log it in full, tell the user briefly
            log.exception("unexpected error in %s", fn.__name__)
            raise gr.Error(
                f"Something went wrong ({type(error).__name__}: {error}). The app is still running.", print_exception=False
            ) from None

    return wrapper


def outputs(result: type[NamedTuple], components: dict[str, Any]) -> list:
    """The output components of an event, in the order of the fields of the handler's result type,
    so a handler names what it returns and no tuple length is kept in step by hand."""
    return [components[name] for name in result._fields]


def unchanged(result: type[NamedTuple]) -> NamedTuple:
    """A result that leaves every output as it is."""
    return result(*[gr.skip()] * len(result._fields))


def image_input(payload) -> object:
    """The raw upload (events use ``preprocess=False``, so Gradio's own decoder never sees it)."""
    if payload is None:
        raise ImageError("no image given: upload one, paste one, use the webcam or pick an example")
    if isinstance(payload, str):
        payload = {"path": payload}
    path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
    url = payload.get("url") if isinstance(payload, dict) else getattr(payload, "url", None)
    if path:
        return path
    if url and url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise ImageError("the pasted image could not be decoded") from None
    raise ImageError("the upload arrived without a file")


def banner(choice: str | None) -> str:
    """Which weights are live, on which device, how good they are, and their caveats."""
    loaded = HUB.loaded(choice)
    notes = "".join(f"<br>⚠️ {note}" for note in loaded.notes)
    acc = (loaded.training.get("accuracy") or {}).get("main") if loaded.training else None
    acc_text = f" · test accuracy {acc:.1%}" if isinstance(acc, float) and acc <= 1 else ""
    size = loaded.input_size
    return (
        f"**Live weights:** {loaded.name} · {len(loaded.classes)} classes · input {size}×{size} · device `{loaded.device}`{acc_text}{notes}"
    )


def model_choices_update(value: str | None = None):
    """The model list now, keeping ``value`` when it is still there."""
    choices = HUB.choices()
    values = [v for _, v in choices]
    return gr.update(choices=choices, value=value if value in values else values[0])


def examples(kind: str) -> list[str]:
    """The example pictures of ``kind`` (``"photos"`` or ``"cifar"``) shipped in assets/."""
    folder = ASSETS / "examples" / kind
    return sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")) if folder.is_dir() else []
