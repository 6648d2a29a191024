"""Chat with a base model and its brand adapter: replies streamed as text, two panes at once.

`ChatEngine` owns the loaded model and who uses it when; `GenerationSettings` says how a reply is
sampled. Nothing here knows about the browser or the terminal.
"""

from chatbot.engine.chat_engine import MODES, ChatEngine, Mode
from chatbot.engine.settings import GenerationSettings
from chatbot.engine.streaming import StopFlag

__all__ = ["ChatEngine", "GenerationSettings", "MODES", "Mode", "StopFlag"]
