"""Who a run or an upload belongs to, recorded beside it (``owner.json``), so a public server lists
a visitor's runs to that visitor only and a restart keeps the record.

The app records an opaque visitor key (derived one-way from a signed id, see ``server/visitors.py``)
and the anonymised name others see; a folder without a record was made by the operator (the CLI,
or before the app had owners) and is everyone's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

__all__ = ["Owner", "OWNER_FILE", "read_owner", "write_owner"]

OWNER_FILE = "owner.json"


class Owner(NamedTuple):
    """``key`` identifies the visitor; ``operator`` marks a run the operator made from the app
    (listed for everyone)."""

    key: str
    name: str
    operator: bool = False


def write_owner(folder: str | Path, owner: Owner) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{OWNER_FILE}.tmp"
    tmp.write_text(json.dumps(owner._asdict()))
    tmp.replace(folder / OWNER_FILE)


def read_owner(folder: str | Path) -> Owner | None:
    """The record; None when there is none (the operator's). A record that cannot be read belongs
    to nobody (key ``"?"``): hidden from everyone rather than shown to everyone."""
    path = Path(folder) / OWNER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Owner(str(data["key"]), str(data.get("name", "")), bool(data.get("operator", False)))
    except (OSError, ValueError, KeyError, TypeError):
        return Owner("?", "unknown", False)
