"""Mutation scores of named modules of ``salsa_optax/_src``, written to ``benchmarks/results``.

Run from the repository root, through ``scripts/mutation.sh`` (which installs nothing and only
forwards its arguments)::

    bash scripts/mutation.sh eg_step_size layerwise_curvature schedules

For each module in turn, ``mutmut run`` mutates ``salsa_optax/_src/<module>.py`` in its
``mutants/`` copy and runs, for each mutant, the tests of the ``[tool.mutmut]`` selection in
``pyproject.toml`` that call the mutated function, stopping at the first failure. The report
(``mutation.md`` and ``mutation.json``) gives per module the killed, surviving and timed-out
mutants and the score killed / (total - equivalent), with the equivalent mutants of
``benchmarks/mutation/equivalent.toml`` and the reason each is equivalent.
"""

import argparse
import datetime
import importlib.metadata
import json
import pathlib
import shlex
import subprocess
import sys

from benchmarks.mutation import report, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="+", help="modules of salsa_optax/_src, e.g. schedules")
    parser.add_argument("--max-children", type=int, default=1, help="parallel mutant workers")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    args = parser.parse_args(argv)
    for module in args.modules:
        if not pathlib.Path(f"salsa_optax/_src/{module}.py").is_file():
            parser.error(f"no module salsa_optax/_src/{module}.py")

    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": shlex.join(["bash", "scripts/mutation.sh", *(argv or sys.argv[1:])]),
        "mutmut": importlib.metadata.version("mutmut"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    run.fresh_working_copy()
    equivalent = report.load_equivalent()
    rows = []
    # Rewritten after each module, so that an interrupted run keeps the modules it finished.
    for module in args.modules:
        cost = run.run_module(module, args.max_children)
        row = report.summarise(module, run.verdicts(), equivalent, run.PACKAGE)
        rows.append(row | cost._asdict())
        (args.out / "mutation.json").write_text(
            json.dumps(header | {"modules": rows}, indent=2) + "\n"
        )
        (args.out / "mutation.md").write_text(report.markdown(header, rows))
    print(report.markdown(header, rows))


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()

    dirty = (
        " (with uncommitted changes)"
        if git("status", "--porcelain", "--", "salsa_optax", "tests")
        else ""
    )
    return git("rev-parse", "HEAD") + dirty


if __name__ == "__main__":
    main()
