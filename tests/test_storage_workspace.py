"""Atomic writes keep the previous version; the workspace resolves and records brands."""

from __future__ import annotations

import os

import pytest

from chatbot.errors import BrandVoiceError
from chatbot.storage import atomic_dir, atomic_write_json, atomic_write_text, read_jsonl
from chatbot.workspace import Workspace, resolve_workspace, slugify


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_write_failure_keeps_previous(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})
    assert target.read_text().strip().endswith("}")
    assert '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_atomic_dir_swaps_in_whole_and_keeps_old_on_error(tmp_path):
    target = tmp_path / "brand"
    with atomic_dir(target) as tmp:
        (tmp / "x.txt").write_text("v1")
    assert (target / "x.txt").read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "x.txt").write_text("v2")
        raise RuntimeError("disk full")
    assert (target / "x.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brand"]


def test_read_jsonl_round_trip(tmp_path):
    p = tmp_path / "rows.jsonl"
    p.write_text('{"a": 1}\n\n{"a": "é"}\n', encoding="utf-8")
    assert read_jsonl(p) == [{"a": 1}, {"a": "é"}]


def test_workspace_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("BRANDVOICE_WORKSPACE", str(tmp_path / "env"))
    assert resolve_workspace(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_workspace(None) == tmp_path / "env"
    monkeypatch.delenv("BRANDVOICE_WORKSPACE")
    assert "brandvoice" in str(resolve_workspace(None))


@pytest.mark.parametrize(
    ("name", "slug"),
    [("Kettlebird Tea Co.", "kettlebird-tea-co"), ("Café  Olé!", "cafe-ole"), ("../../etc", "etc")],
)
def test_slugify(name, slug):
    assert slugify(name) == slug


def test_slugify_refuses_empty():
    with pytest.raises(BrandVoiceError, match="no letters or digits"):
        slugify("!!! ???")


def test_workspace_records_brands_and_explains_unknown(tmp_path):
    ws = Workspace.open(tmp_path)
    ws.record_brand("kettlebird", "Kettlebird", 10, 9, 1)
    ws.record_brand("kettlebird", "Kettlebird", 12, 10, 2)
    assert [(b["slug"], b["conversations"]) for b in ws.brands()] == [("kettlebird", 12)]
    with pytest.raises(BrandVoiceError, match="No prepared brand 'nope'.*kettlebird"):
        ws.find_brand("Nope")


def _mode(path) -> int:  # noqa: ANN001
    import stat

    return stat.S_IMODE(path.stat().st_mode)


def test_the_workspace_is_private_to_its_owner(tmp_path):
    old = os.umask(0o022)  # a typical default: new files world-readable
    try:
        ws = Workspace.open(tmp_path / "ws")
        assert _mode(ws.root) == 0o700 and _mode(ws.db_path) == 0o600
        assert all(_mode(ws.root / name) == 0o700 for name in ("brands", "runs", "exports"))
        # An existing workspace made world-readable is tightened when opened.
        os.chmod(ws.root, 0o755)
        os.chmod(ws.db_path, 0o644)
        ws = Workspace.open(ws.root)
        assert _mode(ws.root) == 0o700 and _mode(ws.db_path) == 0o600
    finally:
        os.umask(old)


def test_the_command_line_writes_private_files(tmp_path):
    """The CLI runs with umask 077: what it writes in the workspace is 0600, folders 0700."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (
        "import os, sys; os.umask(0o022); from chatbot import cli; "
        "rc = cli.main(['brands', '--workspace', sys.argv[1]]); "
        "open(os.path.join(sys.argv[1], 'probe.txt'), 'w').close(); sys.exit(rc)"
    )
    env = {**os.environ, "PYTHONPATH": str(root)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "ws")], check=True, env=env)
    assert _mode(tmp_path / "ws" / "probe.txt") == 0o600
    assert _mode(tmp_path / "ws") == 0o700


def test_a_swap_cut_short_by_a_crash_gets_the_old_version_back(tmp_path):
    target = tmp_path / "brand"
    atomic_write_text(target / "data.txt", "v1")
    os.replace(target, tmp_path / ".brand.old")  # the crash: old moved aside, new not yet in
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        atomic_write_text(tmp / "data.txt", "v2")
        raise RuntimeError("the next write fails too")
    assert (target / "data.txt").read_text() == "v1"
    assert not (tmp_path / ".brand.old").exists()


def test_checkpoint_files_reach_the_disk_before_the_complete_marker(tmp_path, monkeypatch):
    from pathlib import Path

    from chatbot.training.run_files import COMPLETE_MARKER, CheckpointStore

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store = CheckpointStore(tmp_path / "checkpoints")
    with store.writing(5) as staging:
        (staging / "adapter_model.safetensors").write_bytes(b"w" * 100)
        (staging / "optimizer").mkdir()
        (staging / "optimizer" / "state.pt").write_bytes(b"s" * 100)
    [done] = store.complete()
    assert (done / COMPLETE_MARKER).is_file()
    marker = next(i for i, p in enumerate(synced) if COMPLETE_MARKER in Path(p).name)
    before = {Path(p).name for p in synced[:marker]}
    assert {"adapter_model.safetensors", "state.pt", "optimizer"} <= before
    assert str(tmp_path / "checkpoints") in synced[marker:]  # the rename into place, too
