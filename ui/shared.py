"""What every tab shares: the model hub and the training job of this server, the operator's settings
and who the visitor is, the turning of expected failures into clear messages, the raw upload, the
banner, and named outputs."""

from __future__ import annotations

import base64
import functools
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from explain import ImageError
from googlenet.datasets.cifar10 import DataError
from googlenet.training.trainer import TrainingError
from googlenet.weights import CheckpointError, runs_dir
from server.hub import EVERYONE, ModelHub, UploadPolicy, accuracy_summary
from server.jobs import JobBusy, NotOwner, TrainingJob, latest_run
from server.settings import Settings, from_environment
from server.storage import PictureLedger
from server.visitors import Visitor, Visitors, load_secret
from server.zerogpu import gpu

__all__ = [
    "ASSETS",
    "HUB",
    "JOB",
    "TOP_CLASS",
    "gpu",
    "configure",
    "settings",
    "visitors",
    "current_visitor",
    "open_choices",
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
USER_ERRORS = (ImageError, CheckpointError, DataError, TrainingError, JobBusy, NotOwner, ValueError, FileNotFoundError)
TOP_CLASS = "(top class)"
_SETTINGS: Settings | None = None
_VISITORS: Visitors | None = None
_PICTURES = PictureLedger(None, None, None)
_EXAMPLE_DIGESTS: dict[int, set[str]] = {}  # size → digests of the app's example pictures


def configure(new: Settings) -> Settings:
    """Apply the operator's settings to this process (``app.main`` and tests call it before ``build``)."""
    global _SETTINGS, _PICTURES
    _SETTINGS = new
    mb = 2**20
    _PICTURES = PictureLedger(
        quota_bytes=int(new.upload_quota_mb * mb) if new.public and new.upload_quota_mb else None,
        total_bytes=int(new.upload_total_mb * mb) if new.public and new.upload_total_mb else None,
        retention_s=new.retention_hours * 3600 if new.retention_hours else None,
    )
    HUB.private_listing = new.public
    HUB.policy = UploadPolicy(
        quota_bytes=int(new.upload_quota_mb * mb) if new.upload_quota_mb else None,
        total_bytes=int(new.upload_total_mb * mb) if new.upload_total_mb else None,
        retention_s=new.retention_hours * 3600 if new.retention_hours else None,
    )
    HUB.viewer = viewer_key
    return new


def settings() -> Settings:
    """The settings in force (read from the environment on first use if nobody configured them)."""
    return _SETTINGS if _SETTINGS is not None else configure(from_environment())


def visitors() -> Visitors:
    """This server's visitor registry (its secret is read or made on first use)."""
    global _VISITORS
    if _VISITORS is None:
        _VISITORS = Visitors(load_secret(runs_dir()))
    return _VISITORS


def session_hash(request: gr.Request | None = None) -> str | None:
    """The Gradio session of the event being served (each page load and each API client has one)."""
    if request is None:
        from gradio.context import LocalContext  # where Gradio keeps the request of the running event

        request = LocalContext.request.get(None)
    return getattr(request, "session_hash", None) if request is not None else None


def current_visitor(request: gr.Request | None = None, token: object = None) -> tuple[Visitor, bool]:
    """The visitor behind this event (see :meth:`Visitors.identify`): (visitor, token is new)."""
    return visitors().identify(token, session_hash(request))


def viewer_key() -> str | None:
    """Who the model hub lists and loads for: a visitor key, everyone for an operator, None for a
    request from a session that never showed a token (it sees what everyone sees)."""
    visitor = visitors().of_session(session_hash())
    if visitor is None:
        return None
    return EVERYONE if visitor.operator else visitor.key


def open_choices(dropdown: gr.Dropdown) -> gr.Dropdown:
    """A dropdown whose choices change while the app runs (models, a model's classes): its API type
    becomes any string (the handler checks it) instead of the choices known when the page was
    built, which left checkpoints and other models' classes out of the API page. (An instance
    attribute, not a subclass: Gradio writes a .pyi file beside every component subclass.)"""
    dropdown.api_info = lambda: {"type": "string"}
    return dropdown


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


def chosen_target(target: object) -> object:
    """The class a control asks for: ``None`` (the main head's top class) for "(top class)" or nothing."""
    return None if target in (None, "", TOP_CLASS) else target


def image_input(payload) -> object:
    """The raw upload (events use ``preprocess=False``, so Gradio's own decoder never sees it)."""
    if payload is None:
        raise ImageError("no image given: upload one, paste one, use the webcam or pick an example")
    if isinstance(payload, str):
        payload = {"path": payload}
    path = payload.get("path") if isinstance(payload, dict) else getattr(payload, "path", None)
    url = payload.get("url") if isinstance(payload, dict) else getattr(payload, "url", None)
    if path:
        charge_upload(path)
        return path
    if url and url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1], validate=False)
        except (ValueError, IndexError):
            raise ImageError("the pasted image could not be decoded") from None
    raise ImageError("the upload arrived without a file")


def charge_upload(path: str) -> None:
    """Count an uploaded picture against its visitor's quota on a public server (the app's own
    example pictures are not uploads)."""
    if not settings().public or not Path(path).is_file() or _is_example(Path(path)):
        return
    session = session_hash()
    visitor = visitors().of_session(session)
    _PICTURES.charge(path, visitor.key if visitor else f"session:{session}")


def reserve_dataset(folder: Path, size: int, owner: str, what: str) -> None:
    """Hold an uploaded training .zip's unpacked bytes against its visitor's quota on a public
    server, before it is extracted (ImageError when refused; see :mod:`server.storage`)."""
    if settings().public:
        _PICTURES.reserve(folder, size, owner, what)


def _is_example(path: Path) -> bool:
    if not _EXAMPLE_DIGESTS:
        for kind in ("cifar", "photos"):
            for example in examples(kind):
                _EXAMPLE_DIGESTS.setdefault(Path(example).stat().st_size, set()).add(_digest(Path(example)))
    digests = _EXAMPLE_DIGESTS.get(path.stat().st_size)
    return bool(digests) and _digest(path) in digests


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def banner(choice: str | None) -> str:
    """Which weights are live, on which device, how good they are, and their caveats; without
    ImageNet weights, why not and how to get them (also when another model was picked on purpose)."""
    loaded = HUB.loaded(choice)
    notes = list(loaded.notes)
    missing = HUB.imagenet_note() if loaded.source != "imagenet" else None
    if missing and not any(note.startswith("ImageNet weights unavailable") for note in notes):
        notes.insert(0, missing)
    summary = accuracy_summary(loaded.training) if loaded.training else ""
    size = loaded.input_size
    head = f"**Live weights:** {loaded.name} · {len(loaded.classes)} classes · input {size}×{size} · device `{loaded.device}`"
    return head + (f" · {summary}" if summary else "") + "".join(f"<br>⚠️ {note}" for note in notes)


def model_choices_update(value: str | None = None):
    """The model list now, as this visitor may see it, keeping ``value`` when it is still there."""
    choices = HUB.choices(viewer_key())
    values = [v for _, v in choices]
    return gr.update(choices=choices, value=value if value in values else values[0])


def examples(kind: str) -> list[str]:
    """The example pictures of ``kind`` (``"photos"`` or ``"cifar"``) shipped in assets/."""
    folder = ASSETS / "examples" / kind
    return sorted(str(p) for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")) if folder.is_dir() else []


def last_data_folder() -> str:
    """The folder the Train tab offers on a page load (a local server only): the data of the newest run
    whose folder still exists, else the data root. The Microscope reads this field too, so a page
    opened after a run trained from ``data/cifar10-subset`` finds that run's pictures (issue 24.3)."""
    rules = settings()
    if rules.public:
        return str(rules.data_root)
    run = latest_run()
    try:
        data = json.loads((run / "config.json").read_text()).get("data") if run is not None else None
    except (OSError, ValueError, AttributeError):
        data = None
    if isinstance(data, str) and data and Path(data).expanduser().is_dir():
        return data
    return str(rules.data_root)
