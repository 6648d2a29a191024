"""The `brandvoice` command: exit codes, readable errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.cli.commands import main

ASSETS = Path(__file__).parent / "assets" / "brand"


def _prepare(ws: Path, *files: Path, extra: tuple[str, ...] = ("--no-tokens",)) -> int:
    return main(
        [
            "prepare",
            "--workspace",
            str(ws),
            "--brand",
            "Lumen Lamps",
            "--conversations",
            *map(str, files),
            "--style-guide",
            str(ASSETS / "style_guide.md"),
            *extra,
        ]
    )


def test_prepare_prints_the_report_and_succeeds(tmp_path, capsys):
    code = _prepare(tmp_path, ASSETS / "conversations.jsonl", ASSETS / "tickets.csv")
    out = capsys.readouterr().out
    assert code == 0
    assert "Brand: Lumen Lamps" in out and "Statistics" in out and "conversations" in out
    assert (tmp_path / "brands" / "lumen-lamps" / "train.jsonl").exists()


def test_prepare_with_errors_exits_1_and_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text((ASSETS / "conversations.jsonl").read_text() + "{not json}\n")
    assert _prepare(tmp_path / "ws", bad) == 1
    out = capsys.readouterr().out
    assert "bad.jsonl, line 15" in out and "Not written" in out


def test_unreadable_file_exits_2_with_one_message(tmp_path):
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 50)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chatbot.cli",
            "prepare",
            "--workspace",
            str(tmp_path / "ws"),
            "--brand",
            "X",
            "--conversations",
            str(junk),
            "--style-guide",
            str(ASSETS / "style_guide.md"),
            "--no-tokens",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "junk.csv" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert _prepare(tmp_path, tmp_path / "nope.jsonl") == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_brands_lists_prepared_brands(tmp_path, capsys):
    _prepare(tmp_path, ASSETS / "conversations.jsonl")
    capsys.readouterr()
    assert main(["brands", "--workspace", str(tmp_path)]) == 0
    assert "lumen-lamps" in capsys.readouterr().out


@pytest.mark.slow
def test_prepare_counts_tokens_with_the_default_model(tmp_path, default_model_dir):
    assert _prepare(tmp_path, ASSETS / "conversations.jsonl", extra=()) == 0
    report = json.loads((tmp_path / "brands" / "lumen-lamps" / "report.json").read_text())
    stats = report["stats"]
    assert stats["tokens_per_example"]["p50"] > 10 and stats["assistant_tokens"] > 0


def test_train_says_how_long_before_the_run_starts(
    tmp_path, capsys, monkeypatch, tiny_model_dir: Path
):
    from chatbot.runs import jobs

    assert _prepare(tmp_path, ASSETS / "conversations.jsonl") == 0
    capsys.readouterr()
    started: list[str] = []

    def fake_start(ws, brand, config, *, preset=""):  # noqa: ANN001, ANN202
        # What was printed by the time the run starts.
        started.append(capsys.readouterr().out)
        return jobs.Run(
            id="r1",
            brand="lumen-lamps",
            state="queued",
            preset=preset,
            base_model="x",
            created=0.0,
            started=None,
            finished=None,
            error=None,
            pid=None,
            run_dir=tmp_path / "r1",
        )

    monkeypatch.setattr(jobs, "start_run", fake_start)
    code = main(
        [
            "train",
            "--workspace",
            str(tmp_path),
            "--brand",
            "Lumen Lamps",
            "--detach",
            "--base-model",
            str(tiny_model_dir),
            "--set",
            "epochs=2",
        ]
    )
    assert code == 0 and started
    line = started[0].strip().splitlines()[-1]
    assert line.startswith("Training Lumen Lamps (quick preset): about ")
    assert "minute" in line and "steps" in line


def test_ui_starts_warming_the_chat_model_before_it_serves(monkeypatch, tmp_path, capsys):
    import threading

    import ui
    from ui.services import WarmUp

    events: list[str] = []
    launched = threading.Event()

    class FakeServices:
        warm_up_state = WarmUp("idle")

        @classmethod
        def create(cls, workspace: str, base_model: str) -> FakeServices:
            return cls()

        def start_warm_up(self) -> threading.Thread:
            events.append("warm-up started")
            self.warm_up_state = WarmUp("warming", "Lumen Lamps (run 1)")

            def load() -> None:
                launched.wait(timeout=30)
                events.append("warm-up done")
                self.warm_up_state = WarmUp("ready", "Lumen Lamps (run 1)", seconds=3.0)

            worker = threading.Thread(target=load)
            worker.start()
            return worker

    def fake_launch(
        services: FakeServices, host: str, port: int, *, allowed=(), on_ready=None
    ) -> None:
        events.append("launched")
        launched.set()
        assert on_ready is not None
        on_ready()  # the server answers: the app says so, then waits for the warm-up
        events.append("serving until Ctrl-C")

    monkeypatch.setattr(ui, "Services", FakeServices)
    monkeypatch.setattr(ui, "launch", fake_launch)
    assert main(["ui", "--workspace", str(tmp_path)]) == 0
    assert events == ["warm-up started", "launched", "warm-up done", "serving until Ctrl-C"]
    out = capsys.readouterr().out
    assert "Getting the chat model ready for Lumen Lamps (run 1)..." in out
    assert "Chat model ready (3 s)." in out


def test_choices_come_from_the_settings_they_name():
    import argparse
    import typing

    from chatbot.cli.commands import _build_parser
    from chatbot.config import DEFAULT_PRESET, PRESETS, TrainConfig, choices
    from chatbot.engine import MODES
    from chatbot.export.gguf_file import GGUF_QUANTS
    from chatbot.export.package import FORMATS
    from chatbot.feedback.preferences import PreferenceKind
    from chatbot.training.from_votes import METHODS

    commands = next(
        a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices

    def option(command: str, flag: str) -> argparse.Action:
        return next(a for a in commands[command]._actions if flag in a.option_strings)

    for command in ("prepare", "train"):
        assert list(option(command, "--preset").choices) == list(PRESETS)
        assert option(command, "--preset").default == DEFAULT_PRESET
    assert list(option("train", "--quantization").choices) == list(
        choices(TrainConfig, "quantization")
    )
    assert list(option("train", "--distributed").choices) == list(
        choices(TrainConfig, "distributed")
    )
    assert list(option("train", "--method").choices) == list(METHODS)
    assert list(option("chat", "--mode").choices) == list(MODES)
    assert list(option("export", "--format").choices) == list(FORMATS)
    assert list(option("export", "--quant").choices) == list(GGUF_QUANTS)
    assert list(option("export-votes", "--format").choices) == list(typing.get_args(PreferenceKind))
