"""One base for the errors a user can cause and fix: a bad param, a missing or broken input, a failed
download, a model a runtime refuses. Every stage's main() catches PipelineError alone and prints it
as one line, `<stage> failed: <message>`, with exit status 2; any other exception is a bug in this
code and keeps its traceback.

Each subclass also keeps the builtin base it had before (ValueError, RuntimeError, ...), so code
that catches those still does.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

USER_ERROR = 2  # the exit status argparse gives a bad argument: one convention for every mistake
REPRO_HINT = "an earlier stage writes it: run `dvc repro`"


class PipelineError(Exception):
    """Something the user can fix (a param, an input, the environment), said in one sentence."""


class MissingInputError(PipelineError, FileNotFoundError):
    """An input file or folder is not there."""


def require_inputs(*paths: Path | None, hint: str = REPRO_HINT) -> None:
    """Raise MissingInputError naming every one of `paths` that does not exist (None: not given)."""
    missing = [str(p) for p in paths if p is not None and not Path(p).exists()]
    if missing:
        raise MissingInputError(f"{', '.join(missing)}: no such file or folder{f' ({hint})' if hint else ''}")


class NotAFileError(PipelineError, IsADirectoryError):
    """A folder was given where a file (a model, a record) is expected."""


def require_files(*paths: Path | None, hint: str = REPRO_HINT) -> None:
    """require_inputs(), and each of `paths` a file: a folder given for a model is named in one
    sentence (NotAFileError) instead of failing later as IsADirectoryError."""
    require_inputs(*paths, hint=hint)
    folders = [str(p) for p in paths if p is not None and Path(p).is_dir()]
    if folders:
        raise NotAFileError(f"{', '.join(folders)}: a folder, where a file is expected")


def fail(stage: str, error: PipelineError) -> NoReturn:
    """The one-line report of a user's mistake, then exit status 2."""
    print(f"{stage} failed: {error}", file=sys.stderr)
    sys.exit(USER_ERROR)
