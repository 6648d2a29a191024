"""The workspace: where brands, runs and the SQLite database live, and how they are named.

Resolution order: an explicit folder, else $BRANDVOICE_WORKSPACE, else a folder under the user's
data dir. The database records brands, training runs and votes; files hold the data itself.

A workspace holds brand data and votes, personal data included until it is redacted, so it is
private to its owner: the folder and its top-level folders are 0700 (tightened when an existing
workspace is opened) and the database file 0600. Processes of the product (the CLI, training
workers) run with umask 077, so whatever they write inside is 0600 too.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from chatbot.errors import BrandVoiceError

__all__ = ["Workspace", "resolve_workspace", "slugify", "brandvoice_home", "PRIVATE_UMASK"]

PRIVATE_UMASK = 0o077
"""The umask of the product's processes: files 0600 and folders 0700."""
_FOLDERS = ("brands", "runs", "exports")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS brands (
    slug TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    conversations INTEGER NOT NULL DEFAULT 0,
    train_size INTEGER NOT NULL DEFAULT 0,
    eval_size INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    brand TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled')),
    preset TEXT NOT NULL DEFAULT '',
    base_model TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error TEXT,
    pid INTEGER,
    run_dir TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    brand TEXT NOT NULL,
    run_id TEXT,
    mode TEXT NOT NULL,
    prompt TEXT NOT NULL,
    left_system TEXT NOT NULL,
    right_system TEXT NOT NULL,
    left_reply TEXT NOT NULL,
    right_reply TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('left','right','tie','both_bad')),
    settings TEXT NOT NULL DEFAULT '{}'
);
"""


def brandvoice_home() -> Path:
    """The product's cache (default base model, downloads): $BRANDVOICE_HOME or user cache."""
    env = os.environ.get("BRANDVOICE_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("brandvoice"))


def resolve_workspace(path: str | os.PathLike | None = None) -> Path:
    if path:
        return Path(path).expanduser()
    env = os.environ.get("BRANDVOICE_WORKSPACE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("brandvoice")) / "workspace"


def _private(path: Path, mode: int) -> None:
    """Give `path` `mode` if it exists and this user owns it (a shared parent is left alone)."""
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and (info.st_mode & 0o777) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def slugify(name: str) -> str:
    """'Kettlebird Tea Co.' -> 'kettlebird-tea-co'. Refuses names with nothing usable."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:64].strip("-")
    if not slug:
        raise BrandVoiceError(
            f"Brand name {name!r} has no letters or digits to name a folder with; "
            "choose a name such as 'Kettlebird'."
        )
    return slug


@dataclass
class Workspace:
    root: Path

    @classmethod
    def open(cls, path: str | os.PathLike | None = None) -> Workspace:
        root = resolve_workspace(path)
        try:
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for folder in (root, *(root / name for name in _FOLDERS)):
                folder.mkdir(mode=0o700, exist_ok=True)
                _private(folder, 0o700)
        except OSError as exc:
            raise BrandVoiceError(f"Cannot create workspace folder {root}: {exc.strerror}") from exc
        ws = cls(root)
        with ws.db() as con:
            con.executescript(_SCHEMA)
        for suffix in ("", "-wal", "-shm"):
            _private(root / f"{ws.db_path.name}{suffix}", 0o600)
        return ws

    @property
    def db_path(self) -> Path:
        return self.root / "brandvoice.sqlite3"

    @contextmanager
    def db(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection: one per operation, so several processes can share the file."""
        con = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA busy_timeout=30000")
            yield con
        finally:
            con.close()

    # brands ------------------------------------------------------------------------------
    def brand_dir(self, slug: str) -> Path:
        return self.root / "brands" / slug

    def runs_dir(self) -> Path:
        return self.root / "runs"

    def record_brand(
        self, slug: str, name: str, conversations: int, train: int, evals: int
    ) -> None:
        now = time.time()
        with self.db() as con:
            con.execute(
                """INSERT INTO brands (slug, name, created, updated, conversations, train_size,
                   eval_size) VALUES (?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(slug) DO UPDATE SET name=excluded.name, updated=excluded.updated,
                   conversations=excluded.conversations, train_size=excluded.train_size,
                   eval_size=excluded.eval_size""",
                (slug, name, now, now, conversations, train, evals),
            )

    def brands(self) -> list[dict]:
        with self.db() as con:
            return [dict(r) for r in con.execute("SELECT * FROM brands ORDER BY name")]

    def find_brand(self, name_or_slug: str) -> str:
        """Return the slug of a prepared brand, or say which brands exist."""
        slug = slugify(name_or_slug)
        if (self.brand_dir(slug) / "conversations.jsonl").exists():
            return slug
        known = ", ".join(b["slug"] for b in self.brands()) or "none yet"
        raise BrandVoiceError(
            f"No prepared brand '{slug}' in workspace {self.root} (prepared brands: {known}). "
            "Prepare it first.",
            option="prepare",
        )
