"""`accelerate launch`, bound to the job's worker: `python -m chatbot.training.launcher ARGS...`.

The same command line as `accelerate launch ARGS...`, run in a process that dies with the worker
that started it (`die_with_parent`) and passes the same fate on to its ranks: they die with this
process. A killed worker therefore leaves neither a launcher nor a rank training on its own.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    from chatbot.training.distributed import PARENT_ENV, die_with_parent

    die_with_parent()
    os.environ[PARENT_ENV] = str(os.getpid())  # the ranks' parent is this process

    from accelerate.commands.launch import main as accelerate_launch

    sys.argv = ["accelerate launch", *sys.argv[1:]]
    accelerate_launch()


if __name__ == "__main__":
    main()
