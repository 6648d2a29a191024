"""Chat with a base model and its brand adapter: replies streamed as text, two panes at once.

`ChatEngine` owns the loaded model and who uses it when; `GenerationSettings` says how a reply is
sampled. `fewshot` picks the example exchanges of the few-shot baseline and `reply_length` bounds a
reply the way the brand writes. Nothing here knows about the browser or the terminal, or about
training runs.
"""

from chatbot.engine.chat_engine import MODES, ChatEngine, Mode
from chatbot.engine.fewshot import Example
from chatbot.engine.priority import in_background
from chatbot.engine.reply_length import ReplyBounds
from chatbot.engine.settings import GenerationSettings
from chatbot.engine.streaming import StopFlag

# The engine's public names: what the faces may use of it (tests/test_architecture.py).
__all__ = [
    "ChatEngine",
    "Example",
    "GenerationSettings",
    "MODES",
    "Mode",
    "ReplyBounds",
    "StopFlag",
    "in_background",
]
