"""What the operator of a server allows its visitors: training, its limits, data, downloads, uploads.

Read once at start from environment variables and ``python app.py`` flags (a flag wins over its
variable). ``GOOGLENET_PUBLIC=1`` (or ``--public``, and on by default when ``SPACE_ID`` says the
app runs on a Hugging Face Space) selects the public defaults; without it a local user keeps the
freedom of a single-user tool: training open to whoever is at the page, no limits, a free data path.
The README has the table; every refusal names its limit, its value and the variable that sets it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Settings", "TRAINING_MODES", "LimitExceeded", "add_arguments", "from_environment"]

TRAINING_MODES = ("off", "owner", "open")
Training = Literal["off", "owner", "open"]


class LimitExceeded(ValueError):
    """A visitor asked for more than the operator allows (the message names every limit passed)."""


@dataclass(frozen=True)
class Settings:
    """The operator's settings. ``None`` for a limit means no limit.

    Attributes:
        public: strangers share this server: runs have owners, limits apply, data is chosen from a list.
        training: ``off`` (nobody trains from the app), ``owner`` (a run belongs to the visitor who
            started it; only they or an operator stop it), ``open`` (anyone starts and stops: one user).
        max_epochs, max_width, max_input_size, max_batch, max_minutes: the largest run a visitor may ask
            for; ``max_minutes`` is wall time, after which the run stops with a checkpoint.
        data_root: the folder whose datasets visitors choose from (``GOOGLENET_DATA``).
        named_datasets: name → folder from ``GOOGLENET_DATASETS``; ``None`` offers what
            ``data_root`` holds (see :meth:`datasets`).
        downloads: whether "Download CIFAR-10" may run; ``download_dir`` is where it writes (on a
            public server always inside ``data_root``, never a visitor's path).
        admin_token: lifts every limit and may stop any run (typed in the Train tab's Operator box).
        upload_quota_mb, upload_total_mb, retention_hours: uploaded checkpoints and images per
            visitor, in total (oldest uploads evicted first; runs are never evicted), and how long
            uploads are kept.
        run_history: Gradio's run history page (stores each call's inputs and outputs in the browser).
        mcp: serve the agent tools over MCP at ``/gradio_api/mcp``.
    """

    public: bool = False
    training: Training = "open"
    max_epochs: int | None = None
    max_width: float | None = None
    max_input_size: int | None = None
    max_batch: int | None = None
    max_minutes: float | None = None
    data_root: Path = Path("data")
    named_datasets: dict[str, Path] | None = None
    downloads: bool = True
    download_dir: Path | None = None  # None: the path typed in the form (local use)
    admin_token: str | None = None
    upload_quota_mb: float | None = None
    upload_total_mb: float | None = None
    retention_hours: float | None = None
    run_history: bool = False
    mcp: bool = False

    def __post_init__(self) -> None:
        if self.training not in TRAINING_MODES:
            raise ValueError(f"training must be one of {TRAINING_MODES}, got {self.training!r}")
        if self.download_dir is not None and self.public:
            inside = Path(self.download_dir).resolve().is_relative_to(Path(self.data_root).resolve())
            if not inside:
                raise ValueError(
                    f"GOOGLENET_DOWNLOAD_DIR ({self.download_dir}) must be inside the data root ({self.data_root}) on a public server"
                )

    # -- what a visitor may do --

    def check_run(self, *, epochs: int, width: float, input_size: int, batch_size: int, minutes: float | None) -> None:
        """Raise :class:`LimitExceeded` naming every limit the request passes (operators skip this)."""
        over = []
        for value, limit, what, variable in (
            (epochs, self.max_epochs, "epochs", "GOOGLENET_MAX_EPOCHS"),
            (width, self.max_width, "width", "GOOGLENET_MAX_WIDTH"),
            (input_size, self.max_input_size, "input size (pixels)", "GOOGLENET_MAX_INPUT_SIZE"),
            (batch_size, self.max_batch, "batch size", "GOOGLENET_MAX_BATCH"),
            (minutes, self.max_minutes, "wall time (minutes)", "GOOGLENET_MAX_MINUTES"),
        ):
            if limit is not None and value is not None and value > limit:
                over.append(f"{what} {_number(value)} is over this server's limit of {_number(limit)} ({variable})")
        if over:
            raise LimitExceeded("Refused: " + "; ".join(over) + ". Ask for less, or run the app on your own machine.")

    def datasets(self) -> dict[str, Path]:
        """Name → folder offered in the Train tab's dropdown on a public server: the operator's
        ``GOOGLENET_DATASETS``, else what the data root holds now (the root itself when it holds a
        CIFAR-10 or CIFAR-100 folder, and each visible sub-folder holding a dataset the trainer
        reads, so a finished download appears at once). The operator curates the data root; a
        visitor only ever sees these names."""
        if self.named_datasets is not None:
            return dict(self.named_datasets)
        root, found = Path(self.data_root), {}
        if (root / "cifar-10-batches-py").is_dir() or (root / "cifar-100-python").is_dir():
            found[root.resolve().name or "data"] = root
        if root.is_dir():
            for child in sorted(root.iterdir()):
                hidden = child.name.startswith(".") or child.name in ("cifar-10-batches-py", "cifar-100-python")
                if not hidden and child.is_dir() and holds_dataset(child):
                    found[child.name] = child
        return found

    def dataset(self, name: str | None) -> Path:
        """The folder of a dataset offered on a public server. An unknown name gets one message
        whatever it is (a path, an existing file, nonsense): the server's files stay unmapped."""
        offered = self.datasets()
        if isinstance(name, str) and name in offered:
            return offered[name]
        names = ", ".join(sorted(offered)) or "none: the operator has not set up a dataset"
        raise ValueError(f"pick a dataset from the list ({names}); this server does not accept folder paths")

    def limits_text(self) -> str:
        """One line for the Train tab: what a visitor may ask for here."""
        parts = [
            f"{what} ≤ {_number(limit)}"
            for what, limit in (
                ("epochs", self.max_epochs),
                ("width", self.max_width),
                ("input", self.max_input_size),
                ("batch", self.max_batch),
                ("minutes", self.max_minutes),
            )
            if limit is not None
        ]
        return ", ".join(parts)


def holds_dataset(folder: Path) -> bool:
    """Whether ``folder`` holds a dataset the trainer reads (CIFAR-10, CIFAR-100, an image folder),
    judged from its folder names only: cheap enough for every page load."""
    from googlenet.datasets import find_cifar100_dir, is_cifar10, is_image_folder

    return is_cifar10(folder) or find_cifar100_dir(folder) is not None or is_image_folder(folder)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# -- reading them --


def public_defaults(on_gpu: bool) -> dict:
    """The public setting's limits: a CPU Space trains the width-0.25 CIFAR model (about 150–200
    images/s on 2 cores, an epoch of 50,000 images in ~5 min), so 20 epochs fit the 2-hour wall-time
    limit; a GPU takes the full network at 224 px."""
    return dict(
        training="owner",
        max_epochs=20 if not on_gpu else 60,
        max_width=0.25 if not on_gpu else 1.0,
        max_input_size=32 if not on_gpu else 224,
        max_batch=256,
        max_minutes=120.0,
        downloads=False,
        upload_quota_mb=120.0,  # two full-width fp32 checkpoints (52 MB each) and some images
        upload_total_mb=2048.0,
        retention_hours=72.0,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``python app.py`` flags; each overrides the environment variable named in its help."""
    parser.add_argument(
        "--public", action="store_true", default=None, help="public-server defaults ($GOOGLENET_PUBLIC=1; on when $SPACE_ID is set)"
    )
    parser.add_argument("--local", dest="public", action="store_false", help="single-user defaults even on a Space")
    parser.add_argument("--training", choices=TRAINING_MODES, help="who may train from the app ($GOOGLENET_TRAINING)")
    parser.add_argument("--max-epochs", type=int, help="$GOOGLENET_MAX_EPOCHS")
    parser.add_argument("--max-width", type=float, help="$GOOGLENET_MAX_WIDTH")
    parser.add_argument("--max-input-size", type=int, help="$GOOGLENET_MAX_INPUT_SIZE")
    parser.add_argument("--max-batch", type=int, help="$GOOGLENET_MAX_BATCH")
    parser.add_argument("--max-minutes", type=float, help="wall time of one run ($GOOGLENET_MAX_MINUTES)")
    parser.add_argument("--data", help="data root ($GOOGLENET_DATA)")
    parser.add_argument(
        "--downloads", dest="downloads", action="store_true", default=None, help="allow Download CIFAR-10 ($GOOGLENET_DOWNLOADS=1)"
    )
    parser.add_argument("--no-downloads", dest="downloads", action="store_false")
    parser.add_argument("--mcp", action="store_true", default=None, help="serve MCP tools ($GRADIO_MCP_SERVER=True)")


def from_environment(args: argparse.Namespace | None = None, environ: dict | None = None, on_gpu: bool = False) -> Settings:
    """Settings from ``environ`` (default ``os.environ``) and parsed flags; ValueError for a bad value."""
    env = os.environ if environ is None else environ
    flags = vars(args) if args is not None else {}

    def pick(flag: str, variable: str, convert, default=None):
        if flags.get(flag) is not None:
            return flags[flag]
        raw = env.get(variable, "").strip()
        if raw == "":
            return default
        try:
            return convert(raw)
        except ValueError:
            raise ValueError(f"${variable}={raw!r} is not valid ({convert.__name__} expected)") from None

    public = pick("public", "GOOGLENET_PUBLIC", _boolean, default=bool(env.get("SPACE_ID")))
    base = public_defaults(on_gpu) if public else {}
    data_root = Path(pick("data", "GOOGLENET_DATA", str, default="data")).expanduser()

    def limit(name: str, flag: str, variable: str, convert):
        return pick(flag, variable, _unlimited(convert), default=base.get(name))

    settings = Settings(
        public=public,
        training=pick("training", "GOOGLENET_TRAINING", _training, default=base.get("training", "open")),
        max_epochs=limit("max_epochs", "max_epochs", "GOOGLENET_MAX_EPOCHS", int),
        max_width=limit("max_width", "max_width", "GOOGLENET_MAX_WIDTH", float),
        max_input_size=limit("max_input_size", "max_input_size", "GOOGLENET_MAX_INPUT_SIZE", int),
        max_batch=limit("max_batch", "max_batch", "GOOGLENET_MAX_BATCH", int),
        max_minutes=limit("max_minutes", "max_minutes", "GOOGLENET_MAX_MINUTES", float),
        data_root=data_root,
        named_datasets=_named_datasets(env.get("GOOGLENET_DATASETS", ""), data_root),
        downloads=pick("downloads", "GOOGLENET_DOWNLOADS", _boolean, default=base.get("downloads", True)),
        download_dir=_download_dir(env.get("GOOGLENET_DOWNLOAD_DIR", ""), data_root, public),
        admin_token=env.get("GOOGLENET_ADMIN_TOKEN") or None,
        upload_quota_mb=pick(None, "GOOGLENET_UPLOAD_QUOTA_MB", _unlimited(float), default=base.get("upload_quota_mb")),
        upload_total_mb=pick(None, "GOOGLENET_UPLOAD_TOTAL_MB", _unlimited(float), default=base.get("upload_total_mb")),
        retention_hours=pick(None, "GOOGLENET_RETENTION_HOURS", _unlimited(float), default=base.get("retention_hours")),
        run_history=pick(None, "GRADIO_RUN_HISTORY", _boolean, default=False),
        mcp=pick("mcp", "GRADIO_MCP_SERVER", _boolean, default=False),
    )
    if settings.admin_token is not None and len(settings.admin_token) < 16:
        raise ValueError("$GOOGLENET_ADMIN_TOKEN must be at least 16 characters (it lifts every limit)")
    return settings


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def _training(raw: str) -> str:
    if raw not in TRAINING_MODES:
        raise ValueError(raw)
    return raw


def _unlimited(convert):
    """``none``/``0``-free parsing: ``none`` or ``unlimited`` means no limit."""

    def parse(raw):
        if isinstance(raw, str) and raw.strip().lower() in ("none", "unlimited", "off"):
            return None
        value = convert(raw)
        if value <= 0:
            raise ValueError(raw)
        return value

    parse.__name__ = f"positive {convert.__name__} or 'none'"
    return parse


def _named_datasets(raw: str, data_root: Path) -> dict[str, Path] | None:
    """``name=path,name=path`` (relative paths under the data root); None when not set."""
    if not raw.strip():
        return None
    found: dict[str, Path] = {}
    for item in raw.split(","):
        name, _, path = item.partition("=")
        if not name.strip() or not path.strip():
            raise ValueError(f"$GOOGLENET_DATASETS: expected name=path[,name=path…], got {item!r}")
        folder = Path(path.strip()).expanduser()
        found[name.strip()] = folder if folder.is_absolute() else data_root / folder
    return found


def _download_dir(raw: str, data_root: Path, public: bool) -> Path | None:
    if raw.strip():
        return Path(raw.strip()).expanduser()
    return data_root / "cifar10" if public else None
