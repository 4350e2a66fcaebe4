"""The name a user command shows in its usage line: the console script's name as typed
(`mcuvision-predict --help` says "usage: mcuvision-predict"), or `python -m <module>` when it runs
as a module, so either way the usage line is a command that works."""
from __future__ import annotations

import os
import sys


def prog(module: str) -> str:
    """argparse's `prog` for the command whose code is `module` (its dotted name)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return f"python -m {module}" if not name or name.endswith(".py") else name
