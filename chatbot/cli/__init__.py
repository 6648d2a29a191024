"""The `brandvoice` command: names mapped to functions (`commands`), the only module that parses
arguments; `report` prints results and `chat` is the terminal chat loop."""

from chatbot.cli.commands import main

__all__ = ["main"]
