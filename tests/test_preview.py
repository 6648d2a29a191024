"""Preview while training: only complete checkpoints are offered, Compare chats with the newest
one in the background and moves on when a newer one lands; the few-shot Compare mode; background
generation runs in one thread at the lowest priority; a real run is previewed as it trains."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import torch
from check_support import make_adapter, prepared_brand, record_run
from job_support import tiny_config, wait_until

from chatbot.engine import ChatEngine, GenerationSettings
from chatbot.engine.priority import LOWEST_PRIORITY, in_background, lower_this_thread
from chatbot.errors import BrandVoiceError
from chatbot.feedback.votes import list_votes
from chatbot.runs.jobs import cancel_run, get_run, start_run
from chatbot.runs.preview import brand_previews, newest_preview, pin_newest_preview
from chatbot.training.run_files import CheckpointStore
from chatbot.workspace import Workspace
from ui import compare_tab
from ui.services import EngineSpec, Services

RUN = "20260102-090000-0a0a0a"
SETTINGS = GenerationSettings(temperature=0.0, max_new_tokens=8)


class FakeEngine:
    """Answers "[mode] <adapter folder name>", and records how each pair was asked for."""

    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        self.adapter_dir: Path | None = None
        self.calls: list[dict] = []

    def load_adapter(self, adapter_dir: Path) -> None:
        self.adapter_dir = Path(adapter_dir)

    def set_system_prompts(self, system_prompt: str, tuned_system_prompt: str) -> None:
        self.spec = dataclasses.replace(
            self.spec, system_prompt=system_prompt, tuned_system_prompt=tuned_system_prompt
        )

    def set_fewshot_examples(self, examples: tuple) -> None:
        self.spec = dataclasses.replace(self.spec, fewshot=examples)

    def warm_up(self) -> None:
        pass

    def stream_pair(
        self, left, mode_left, right, mode_right, settings, *, stop=None, background=False
    ) -> Iterator[tuple[str, str]]:  # noqa: ANN001
        self.calls.append({"modes": (mode_left, mode_right), "background": background})
        name = self.adapter_dir.name if self.adapter_dir else "-"
        yield f"[{mode_left}] {name}", f"[{mode_right}] {name}"


def _checkpoint(run_dir: Path, step: int, model_dir: Path) -> Path:
    """A checkpoint as training writes it: staged, then renamed into place with COMPLETE last."""
    with CheckpointStore(run_dir / "checkpoints", keep=3).writing(step) as staging:
        make_adapter(model_dir, staging, seed=step)
    return run_dir / "checkpoints" / f"checkpoint-{step}"


@pytest.fixture
def workspace(tmp_path: Path, tiny_model_dir: Path) -> Workspace:
    ws = prepared_brand(tmp_path / "ws")
    record_run(ws, tiny_model_dir, RUN, state="running", adapter=False)
    return ws


@pytest.fixture
def services(workspace: Workspace) -> Services:
    engines: list[FakeEngine] = []
    return Services(
        workspace,
        engine_factory=lambda spec: engines.append(FakeEngine(spec)) or engines[-1],
        rng=random.Random(0),
    )


def test_only_complete_checkpoints_with_an_adapter_are_previewed(
    workspace: Workspace, tiny_model_dir: Path
) -> None:
    run_dir = workspace.runs_dir() / RUN
    assert newest_preview(workspace, RUN) is None
    _checkpoint(run_dir, 10, tiny_model_dir)
    # Newer, but not complete: one being written (no marker yet) and a staging folder.
    half = run_dir / "checkpoints" / "checkpoint-30"
    make_adapter(tiny_model_dir, half)
    staging = run_dir / "checkpoints" / ".checkpoint-40.abc.new"
    make_adapter(tiny_model_dir, staging)
    # Complete, but without an adapter in it.
    (run_dir / "checkpoints" / "checkpoint-20").mkdir()
    (run_dir / "checkpoints" / "checkpoint-20" / "COMPLETE").write_text("{}")
    found = newest_preview(workspace, RUN)
    assert found is not None and found.step == 10 and found.total_steps == 10
    assert found.adapter_dir == run_dir / "checkpoints" / "checkpoint-10"
    assert found.label == "Preview: step 10 of 10 (training now)"
    (half / "COMPLETE").write_text("{}")  # the marker lands: now it is the newest
    assert newest_preview(workspace, RUN).step == 30
    assert [p.step for p in brand_previews(workspace, "lumen-lamps")] == [30]
    with workspace.db() as con:
        con.execute("UPDATE runs SET state='succeeded' WHERE id=?", (RUN,))
    assert newest_preview(workspace, RUN) is None and brand_previews(workspace, "lumen-lamps") == []


def test_a_pinned_preview_outlives_the_rotation_of_its_checkpoint(
    workspace: Workspace, tiny_model_dir: Path
) -> None:
    run_dir = workspace.runs_dir() / RUN
    with pytest.raises(BrandVoiceError, match="no complete checkpoint"):
        pin_newest_preview(workspace, RUN)
    store = CheckpointStore(run_dir / "checkpoints", keep=1)
    with store.writing(4) as staging:
        make_adapter(tiny_model_dir, staging, seed=4)
        (staging / "optimizer.pt").write_bytes(b"training state only")
    pinned = pin_newest_preview(workspace, RUN)
    assert pinned.step == 4 and pinned.adapter_dir == run_dir / "preview" / "checkpoint-4"
    weights = (pinned.adapter_dir / "adapter_model.safetensors").read_bytes()
    assert not (pinned.adapter_dir / "optimizer.pt").exists()
    # Training writes the next checkpoint and deletes checkpoint-4 while the preview loads.
    with store.writing(6) as staging:
        make_adapter(tiny_model_dir, staging, seed=6)
    assert not (run_dir / "checkpoints" / "checkpoint-4").exists()
    assert (pinned.adapter_dir / "adapter_model.safetensors").read_bytes() == weights
    engine = ChatEngine(tiny_model_dir, pinned.adapter_dir, "Be brief.", quantization="none")
    reply = "".join(engine.stream([{"role": "user", "content": "Hi"}], "tuned", SETTINGS))
    assert engine.adapter_dir == pinned.adapter_dir and isinstance(reply, str)
    # Pinning again follows the newest; old pins beyond the last two are removed.
    assert pin_newest_preview(workspace, RUN).adapter_dir.name == "checkpoint-6"
    with store.writing(9) as staging:
        make_adapter(tiny_model_dir, staging, seed=9)
    pin_newest_preview(workspace, RUN)
    assert sorted(p.name for p in (run_dir / "preview").iterdir()) == [
        "checkpoint-6",
        "checkpoint-9",
    ]


def test_compare_previews_the_newest_checkpoint_in_the_background(
    services: Services, workspace: Workspace, tiny_model_dir: Path
) -> None:
    run_dir = workspace.runs_dir() / RUN
    setup = compare_tab.compare_setup(services, "lumen-lamps")
    assert "No tuned model yet" in setup.notice and not setup.run_choices
    _checkpoint(run_dir, 5, tiny_model_dir)
    setup = compare_tab.compare_setup(services, "lumen-lamps")
    assert setup.run_choices == [("Preview: step 5 of 10 (training now)", f"preview:{RUN}")]

    def send(text: str, before: compare_tab.CompareFrame | None = None) -> compare_tab.CompareFrame:
        left, right, matchup = (
            (before.left, before.right, before.matchup) if before else (None,) * 3
        )
        frames = compare_tab.compare_stream(
            services,
            "lumen-lamps",
            setup.run_id,
            "base_vs_tuned",
            text,
            left,
            right,
            matchup,
            SETTINGS,
        )
        return list(frames)[-1]

    first = send("Is my lamp ready?")
    engine = services._engine[1]  # the one engine the app keeps
    assert first.right[-1]["content"] == "[tuned] checkpoint-5"
    assert engine.calls[-1] == {"modes": ("base", "tuned"), "background": True}
    assert first.matchup.run_id == RUN and first.matchup.adapter.endswith("checkpoint-5")
    outcome = compare_tab.cast_vote(
        services, "lumen-lamps", "right", first.matchup, first.left, first.right
    )
    assert outcome.vote.adapter.endswith("checkpoint-5")
    assert list_votes(workspace)[0].run_id == RUN

    # A newer checkpoint lands: the picker's label follows, and the next message uses it.
    _checkpoint(run_dir, 8, tiny_model_dir)
    refreshed = compare_tab.preview_refresh(services, "lumen-lamps", setup.run_id)
    assert (
        refreshed["choices"][0][0].startswith("Preview: step 8")
        and refreshed["value"] == setup.run_id
    )
    second = send("And now?", first)
    assert second.right[-1]["content"] == "[tuned] checkpoint-8" and len(second.right) == 4

    # Training finishes: the picker moves to the run's final adapter.
    (run_dir / "adapter").mkdir()
    shutil.copytree(
        run_dir / "checkpoints" / "checkpoint-8", run_dir / "adapter", dirs_exist_ok=True
    )
    with workspace.db() as con:
        con.execute("UPDATE runs SET state='succeeded' WHERE id=?", (RUN,))
    refreshed = compare_tab.preview_refresh(services, "lumen-lamps", setup.run_id)
    assert refreshed["value"] == RUN and all(v == RUN for _, v in refreshed["choices"])
    assert compare_tab.preview_refresh(services, "lumen-lamps", RUN) is None  # nothing to follow


def test_the_fewshot_mode_pits_the_best_prompt_against_tuned(
    services: Services, workspace: Workspace, tiny_model_dir: Path
) -> None:
    run_dir = workspace.runs_dir() / RUN
    make_adapter(tiny_model_dir, run_dir / "adapter")
    with workspace.db() as con:
        con.execute("UPDATE runs SET state='succeeded' WHERE id=?", (RUN,))
    frames = compare_tab.compare_stream(
        services, "lumen-lamps", RUN, "fewshot_vs_tuned", "Hi", None, None, None, SETTINGS
    )
    last = list(frames)[-1]
    assert (last.matchup.left, last.matchup.right) == ("fewshot", "tuned")
    assert last.left[-1]["content"] == "[fewshot] adapter"
    assert compare_tab.pane_labels(last.matchup, "fewshot_vs_tuned") == (
        "A — Base + prompt + examples",
        "B — Tuned",
    )
    engine = services._engine[1]
    assert engine.calls[-1]["background"] is False
    # The engine is given the brand's training examples for the few-shot side.
    assert engine.spec.fewshot and all(len(e) == 2 for e in engine.spec.fewshot)


def test_background_work_runs_in_one_thread_at_the_lowest_priority() -> None:
    before = (torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    def inside() -> tuple[int, int, int]:
        thread = threading.get_native_id()
        policy = os.sched_getscheduler(thread)
        return torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, thread), policy

    assert in_background(inside) == (1, LOWEST_PRIORITY, os.SCHED_IDLE)
    assert os.sched_getscheduler(threading.get_native_id()) != os.SCHED_IDLE
    after = (torch.get_num_threads(), os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert after == before  # the calling thread keeps its threads and priority

    def fails() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        in_background(fails)
    assert callable(lower_this_thread)


def test_a_background_reply_is_the_same_reply(tiny_model_dir: Path) -> None:
    engine = ChatEngine(tiny_model_dir, None, "Be brief.", quantization="none")
    messages = [{"role": "user", "content": "Where is my lamp?"}]
    normal = "".join(
        a for a, _ in engine.stream_pair(messages, "base", messages, "prompted", SETTINGS)
    )
    gentle = engine.stream_pair(messages, "base", messages, "prompted", SETTINGS, background=True)
    assert "".join(a for a, _ in gentle) == normal
    assert "".join(engine.stream(messages, "base", SETTINGS, background=True)) == normal


@pytest.mark.slow
def test_a_real_run_is_previewed_while_it_trains(tmp_path: Path, tiny_model_dir: Path) -> None:
    ws = prepared_brand(tmp_path / "ws")
    config = tiny_config(tiny_model_dir, epochs=500, checkpoint_every=2)
    run = start_run(ws, "Lumen Lamps", config)
    wait = partial(wait_until, timeout=300)
    try:
        wait(lambda: newest_preview(ws, run.id) is not None, "a checkpoint to preview")
        # Training goes on writing (and rotating) checkpoints every 2 steps meanwhile.
        preview = pin_newest_preview(ws, run.id)
        assert get_run(ws, run.id).state == "running"
        assert (preview.adapter_dir / "COMPLETE").is_file()
        engine = in_background(
            partial(
                ChatEngine, tiny_model_dir, preview.adapter_dir, "Be brief.", quantization="none"
            )
        )
        reply = engine.stream(
            [{"role": "user", "content": "Hi"}], "tuned", SETTINGS, background=True
        )
        assert isinstance("".join(reply), str)
    finally:
        cancel_run(ws, run.id, timeout=120)
