"""Compare sends the browser a frame at most every FRAME_INTERVAL seconds while replies stream,
and never drops the first frame, a change of the Stop state, or the last frame."""

from __future__ import annotations

import pytest

from ui import compare_tab
from ui.compare_tab import CompareFrame, Matchup, paced

MATCHUP = Matchup(mode="base_vs_tuned", left="base", right="tuned", run_id="r", adapter="a")


def _frame(text: str, *, done: bool = False, stopped: tuple[str, ...] = ()) -> CompareFrame:
    reply = [{"role": "assistant", "content": text}]
    return CompareFrame(reply, reply, MATCHUP, done=done, stopped=stopped)


def test_fast_frames_are_thinned_and_nothing_that_matters_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([0.0, 0.01, 0.02, 0.03, 0.15, 0.16, 0.17, 0.18, 0.19])
    monkeypatch.setattr(compare_tab.time, "monotonic", lambda: next(clock))
    frames = [
        _frame(""),  # 0.00: the message appears: sent
        _frame("H"),  # 0.01: too soon
        _frame("He"),  # 0.02: too soon
        _frame("Hel", stopped=("left",)),  # 0.03: Stop A pressed: sent at once
        _frame("Hell", stopped=("left",)),  # 0.15: an interval since the last: sent
        _frame("Hello", stopped=("left",)),  # 0.16: too soon
        _frame("Hello!", stopped=("left",)),  # 0.17: too soon
        _frame("Hello!!", stopped=("left",)),  # 0.18: too soon
        _frame("Hello!!", stopped=("left",), done=True),  # 0.19: the last: sent
    ]
    sent = [f.left[-1]["content"] for f in paced(frames)]
    assert sent == ["", "Hel", "Hell", "Hello!!"]


def test_a_stream_that_ends_early_still_shows_its_newest_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = iter([0.0, 0.01, 0.02])
    monkeypatch.setattr(compare_tab.time, "monotonic", lambda: next(clock))
    sent = [f.left[-1]["content"] for f in paced([_frame(""), _frame("a"), _frame("ab")])]
    assert sent == ["", "ab"]
