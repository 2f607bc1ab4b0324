"""Where a result comes from: the git commit and the command, with no path local to one machine."""

import functools
import json
import os
import pathlib
import subprocess
from collections.abc import Sequence

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = REPOSITORY / "benchmarks" / "results"
CODE = ("salsa_optax", "benchmarks", ":!benchmarks/results")


def git_description() -> str:
    """The checkout's commit, and whether the code (salsa_optax/, benchmarks/) differs from it.

    Result files are not code: rewriting them (``--reuse`` of a file into itself) leaves the
    commit clean. ``BENCHMARK_COMMIT``, where set, is taken instead: a copy of the checkout on
    another machine may carry no git folder, or one that is not current.
    """
    if os.environ.get("BENCHMARK_COMMIT"):
        return os.environ["BENCHMARK_COMMIT"]
    git = functools.partial(
        subprocess.run, cwd=REPOSITORY, capture_output=True, text=True, check=True
    )
    try:
        commit = git(["git", "rev-parse", "--short", "HEAD"]).stdout.strip()
        changed = git(["git", "status", "--porcelain", "--", *CODE]).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" with uncommitted changes" if changed.strip() else "")


def command_line(program: str, argv: Sequence[str]) -> str:
    """``program argv`` as someone would rerun it from the repository root.

    ``--out`` is left out (where the files go changes nothing in them) and a path inside the
    repository is written relative to its root, so a header names no folder of one machine.

    >>> command_line("python -m benchmarks.speed", ["--out", "/tmp/x", "--models=mlp"])
    'python -m benchmarks.speed --models=mlp'
    """
    words, skip = [], False
    for word in argv:
        if skip or word.startswith("--out="):
            skip = False
            continue
        if word == "--out":
            skip = True
            continue
        words.append(_relative(word))
    return " ".join([program, *words])


def _relative(word: str) -> str:
    """A path inside the repository relative to its root; any other word unchanged."""
    if not os.path.isabs(word):
        return word
    path = pathlib.Path(word).resolve()
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else word


def write_rows(
    out: str | os.PathLike, name: str, env: dict, rows: list, markdown: str | None = None
) -> list[pathlib.Path]:
    """Writes ``{"environment": env, "rows": rows}`` to ``out/name.json`` (and ``markdown`` to
    ``out/name.md``); returns the paths written."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps({"environment": env, "rows": rows}, indent=1) + "\n")
    paths = [path]
    if markdown is not None:
        paths.append(out / f"{name}.md")
        paths[-1].write_text(markdown)
    return paths
