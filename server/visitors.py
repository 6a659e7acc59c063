"""Who is at the page: a visitor identity signed by the server, kept in the browser.

A visitor is a random id the server signs (HMAC-SHA256 with a server secret) into a token. The page
keeps the token in ``gr.BrowserState`` (the browser's localStorage), so a reload, a new tab or a
server restart is the same visitor; API clients receive it from ``/train_start`` and pass it back.
Nobody can make a token for an id they were not given: ownership needs the token, never a name the
client chooses or a guessable number. Others see only an anonymised name ("visitor amber otter")
derived one-way from the id.

The secret comes from ``GOOGLENET_SECRET`` (set it as a Space secret: identities then survive a
rebuild) or is made once with :func:`secrets.token_bytes` and kept in ``runs/.secret`` (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

__all__ = ["Visitor", "Visitors", "load_secret", "OPERATOR_HOURS"]

log = logging.getLogger("googlenet-explorer")
OPERATOR_HOURS = 12  # an operator sign-in lasts a working day; a visitor's identity does not expire

_ADJECTIVES = (
    "amber", "azure", "brave", "bright", "calm", "clever", "coral", "crimson", "curious", "eager", "gentle", "golden",
    "happy", "indigo", "jolly", "keen", "lively", "lucky", "mellow", "misty", "nimble", "olive", "patient", "quiet",
    "rapid", "rosy", "silver", "steady", "sunny", "swift", "tidy", "witty",
)  # fmt: skip
_ANIMALS = (
    "otter", "heron", "lynx", "panda", "falcon", "badger", "beaver", "bison", "crane", "dolphin", "ferret", "gecko",
    "ibis", "koala", "lemur", "marten", "moose", "newt", "ocelot", "owl", "puffin", "quokka", "raven", "robin",
    "salmon", "seal", "sparrow", "tapir", "toucan", "walrus", "wombat", "yak",
)  # fmt: skip


class Visitor(NamedTuple):
    """One visitor. ``key`` (derived one-way from the id) is what runs and uploads are recorded
    under; ``token`` is what the browser keeps; ``name`` is what other visitors see."""

    id: str
    key: str
    name: str
    operator: bool
    token: str


class Visitors:
    """Issues and checks visitor tokens; remembers which Gradio session is which visitor."""

    def __init__(self, secret: bytes, sessions: int = 10_000) -> None:
        if len(secret) < 16:
            raise ValueError(f"the visitor secret must be at least 16 bytes, got {len(secret)}")
        self._secret = secret
        self._sessions: OrderedDict[str, Visitor] = OrderedDict()  # session hash → visitor, newest last
        self._capacity = sessions
        self._lock = threading.Lock()

    def issue(self, operator: bool = False, visitor_id: str | None = None) -> Visitor:
        """A new visitor (or ``visitor_id`` promoted to an operator), with its signed token."""
        payload = {"id": visitor_id or secrets.token_urlsafe(16), "op": int(operator), "iat": int(time.time())}
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        token = f"v1.{body}.{_b64(self._sign(body))}"
        return self._visitor(payload, token)

    def verify(self, token: object) -> Visitor | None:
        """The visitor of a valid token; None for anything else (forged, truncated, expired, not a string)."""
        if not isinstance(token, str) or token.count(".") != 2 or len(token) > 512:
            return None
        version, body, signature = token.split(".")
        try:
            good = version == "v1" and hmac.compare_digest(_unb64(signature), self._sign(body))
            payload = json.loads(_unb64(body)) if good else None
        except (ValueError, TypeError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
            return None
        if payload.get("op") and time.time() - float(payload.get("iat", 0)) > OPERATOR_HOURS * 3600:
            payload = {**payload, "op": 0}  # an operator sign-in has lapsed: still the same visitor
        return self._visitor(payload, token)

    def identify(self, token: object, session: str | None) -> tuple[Visitor, bool]:
        """The visitor behind an event: its token if valid, else the one this session already is,
        else a new visitor. Returns (visitor, new_token_to_store)."""
        visitor = self.verify(token)
        fresh = visitor is None  # the browser (or API client) should store the token returned
        if visitor is None:
            visitor = self.of_session(session) or self.issue()
        self.remember(session, visitor)
        return visitor, fresh

    def remember(self, session: str | None, visitor: Visitor) -> None:
        if session is None:
            return
        with self._lock:
            self._sessions[session] = visitor
            self._sessions.move_to_end(session)
            while len(self._sessions) > self._capacity:
                self._sessions.popitem(last=False)

    def of_session(self, session: str | None) -> Visitor | None:
        """The visitor a Gradio session has shown its token in (None for a stranger: an API call
        that never sent one)."""
        if session is None:
            return None
        with self._lock:
            return self._sessions.get(session)

    def name_of(self, key: str) -> str:
        """The anonymised name for a visitor key (the same everywhere, reveals nothing)."""
        digest = hashlib.sha256(("name:" + key).encode()).digest()
        return f"visitor {_ADJECTIVES[digest[0] % len(_ADJECTIVES)]} {_ANIMALS[digest[1] % len(_ANIMALS)]}"

    # -- internals --

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).digest()

    def _visitor(self, payload: dict, token: str) -> Visitor:
        key = hmac.new(self._secret, ("key:" + payload["id"]).encode(), hashlib.sha256).hexdigest()[:20]
        return Visitor(payload["id"], key, self.name_of(key), bool(payload.get("op")), token)

    def browser_secret(self) -> str:
        """The key ``gr.BrowserState`` encrypts with: stable across restarts (a random one per start
        would make every stored token unreadable after a restart), derived one-way from the secret
        because Gradio sends it to the page."""
        return hmac.new(self._secret, b"browser-state", hashlib.sha256).hexdigest()[:32]


def load_secret(folder: Path, environ: dict | None = None) -> bytes:
    """``$GOOGLENET_SECRET``, else ``folder/.secret`` (made on first use, mode 0600), else (an
    unwritable folder) a secret for this process only: identities then last until a restart."""
    env = os.environ if environ is None else environ
    if env.get("GOOGLENET_SECRET"):
        return hashlib.sha256(env["GOOGLENET_SECRET"].encode()).digest()
    path = folder / ".secret"
    try:
        if path.is_file() and path.stat().st_size >= 32:
            return path.read_bytes()
        folder.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secret)
        return secret
    except FileExistsError:  # another process made it between our check and our write
        return path.read_bytes()
    except OSError as error:
        log.warning("cannot keep the visitor secret in %s (%s): visitor identities last until a restart", folder, error)
        return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
