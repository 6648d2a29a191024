"""`python -m chatbot.cli`: the same as the `brandvoice` command."""

from chatbot.cli.commands import main

raise SystemExit(main())
