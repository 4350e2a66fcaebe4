"""Push the workspace's outputs and the whole run-cache, so a colleague's `dvc repro --pull` skips
every stage someone already ran with the same code, data and params.

Why not just `dvc push --run-cache`: DVC 3 sends the run-cache records but only the outputs of the
current dvc.lock, and never the `cache: false` metrics a record lists (they live in git). A record
whose files are missing on the remote cannot be restored, so the stage runs again on the other
machine. This sends every file every record names.

    python -m mcuvision.share [--remote NAME]      (or: make push)
    # on the other machine
    dvc pull --run-cache && dvc repro --pull
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mcuvision.cli import prog


def run_records(runs_dir: Path) -> list[tuple[str, str]]:
    """(stage key, run value) of every record in a local run-cache: runs/<k[:2]>/<key>/<value>."""
    return sorted((record.parent.name, record.name) for record in runs_dir.glob("*/*/*") if record.is_file())


def share(remote: str | None = None, root: str = ".") -> tuple[int, int]:
    """Returns (run-cache records, files the remote did not have before)."""
    from dvc.repo import Repo

    with Repo(root) as repo:
        repo.push(remote=remote, run_cache=True)
        records = run_records(Path(repo.stage_cache.cache_dir))
        sent = 0
        for odb, objs in repo.stage_cache.get_used_objs(records).items():
            result = repo.cloud.push(objs, remote=remote, odb=odb)
            if result.failed:
                raise RuntimeError(f"{len(result.failed)} file(s) could not be pushed: "
                                   f"{sorted(map(str, result.failed))[:5]}")
            sent += len(result.transferred)
    return len(records), sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog("mcuvision.share"), description=__doc__.split("\n\n")[0])
    parser.add_argument("--remote", help="DVC remote name (default: the default remote)")
    args = parser.parse_args(argv)
    from dvc.exceptions import DvcException

    try:
        records, sent = share(args.remote)
    except (DvcException, RuntimeError) as error:  # no remote, unreachable storage, missing files
        print(f"share: {error}", file=sys.stderr)
        return 1
    print(f"share: {records} run-cache records, {sent} more files on the remote")
    return 0


if __name__ == "__main__":
    sys.exit(main())
