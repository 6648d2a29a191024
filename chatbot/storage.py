"""Atomic writes: every artifact is written to a temporary sibling, fsynced, then renamed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

__all__ = [
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_yaml",
    "atomic_dir",
    "fsync_path",
    "fsync_tree",
    "read_jsonl",
]


@contextlib.contextmanager
def _atomic_file(path: Path, mode: str) -> Iterator:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with _atomic_file(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[object]) -> None:
    with _atomic_file(path, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def atomic_write_yaml(path: Path, obj: object, header: str = "") -> None:
    body = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=100)
    atomic_write_text(path, header + body)


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Build a folder's new contents in a temporary sibling, then swap it in.

    The previous version stays intact until the new one is complete; if the body raises, the
    previous version is untouched and the temporary folder is removed. The swap is two renames
    (the old version aside as `.<name>.old`, the new one into place); a crash between them leaves
    no `target`, and the next `atomic_dir` on it puts the old version back first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    if old.is_dir() and not target.exists():
        os.replace(old, target)  # a swap that a crash interrupted: the previous version returns
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".new", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_path(target.parent)  # the renames themselves reach the disk
    shutil.rmtree(old, ignore_errors=True)


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file under `root` and every folder's entries (`root` included) to the disk."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder) / name)
        fsync_path(Path(folder))
