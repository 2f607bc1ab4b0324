"""Mutation scores of named modules of ``salsa_optax/_src``, written to ``benchmarks/results``.

Run from the repository root, through ``scripts/mutation.sh`` (which installs nothing and only
forwards its arguments)::

    bash scripts/mutation.sh eg_step_size layerwise_curvature schedules

For each module in turn, ``mutmut run`` mutates ``salsa_optax/_src/<module>.py`` in its
``mutants/`` copy and runs, for each mutant, the tests of the ``[tool.mutmut]`` selection in
``pyproject.toml`` that call the mutated function, stopping at the first failure. The report
(``mutation.md`` and ``mutation.json``) gives per module the killed, surviving and timed-out
mutants and the score killed / (total - equivalent), with the equivalent mutants of
``benchmarks/mutation/equivalent.toml`` and the reason each is equivalent. A run replaces the
rows of the modules it names and keeps the others.

With ``--rerun-survivors``, only the mutants a module's row left alive run again, against the
tests as they are now (tests added since kill some); the mutants the full run killed stay killed::

    bash scripts/mutation.sh directions validation --rerun-survivors

With ``--part K/N``, only the K-th of N parts of each module's mutants runs (those whose number
ends in a digit ``d`` with ``d % N == K - 1``): a module too long for one sitting (``transform``,
1 400 mutants) is measured in parts, and its row sums the parts run so far at the module's current
source, naming which::

    bash scripts/mutation.sh transform --part 1/5 --max-children 2
"""

import argparse
import datetime
import fnmatch
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
    parser.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="run again only the mutants the report's row of each module did not kill (its "
        "source unchanged since), against the current tests, and update that row",
    )
    parser.add_argument(
        "--part",
        type=report.parse_part,
        default=None,
        metavar="K/N",
        help="run only the K-th of N parts of each module's mutants (N divides 10) and add it to "
        "the module's row",
    )
    args = parser.parse_args(argv)
    for module in args.modules:
        if not pathlib.Path(f"salsa_optax/_src/{module}.py").is_file():
            parser.error(f"no module salsa_optax/_src/{module}.py")

    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "command": shlex.join(["bash", "scripts/mutation.sh", *(argv or sys.argv[1:])]),
    }
    report_json = args.out / "mutation.json"
    rows = _previous_rows(report_json)
    if args.rerun_survivors and args.part:
        parser.error("--rerun-survivors reruns a whole row: give no --part")
    if args.rerun_survivors:
        for module in args.modules:
            if module not in rows:
                parser.error(f"{report_json} has no row of {module} to update")
            if _changed_since(rows[module]["run"]["commit"], module):
                parser.error(f"salsa_optax/_src/{module}.py changed since its row's run")
    args.out.mkdir(parents=True, exist_ok=True)
    run.fresh_working_copy()
    equivalent = report.load_equivalent()
    # Rewritten after each module, so that an interrupted run keeps the modules it finished.
    for module in args.modules:
        if args.rerun_survivors:
            full = rows[module]
            names = [name for name in full["survivors"] if name not in equivalent]
            if names:
                cost = run.run_module(module, args.max_children, names)
                updated = report.rerun_row(full, run.verdicts(), equivalent, run.PACKAGE)
                rerun = header | {"mutants": names} | cost._asdict()
                rows[module] = full | updated | {"rerun": rerun}
            else:
                # Nothing to run again: the row takes the equivalent list as it is now, and keeps
                # the record of the run that killed its last mutants.
                print(f"{module}: every mutant killed or listed equivalent, nothing to run again")
                rows[module] = full | report.rerun_row(full, {}, equivalent, run.PACKAGE)
        elif args.part:
            pattern = report.part_pattern(f"{run.PACKAGE}.{module}.", *args.part)
            cost = run.run_module(module, args.max_children, [pattern])
            verdicts = {n: v for n, v in run.verdicts().items() if fnmatch.fnmatch(n, pattern)}
            part = report.summarise(module, verdicts, equivalent, run.PACKAGE)
            part |= cost._asdict() | {"run": header}
            previous = rows.get(module, {}).get("parts", {})
            if previous and any(
                _changed_since(p["run"]["commit"], module) for p in previous.values()
            ):
                print(f"salsa_optax/_src/{module}.py changed since its parts ran: starting over")
                previous = {}
            # The parts run before take the equivalent list as it is now.
            previous = {
                name: p | report.rerun_row(p, {}, equivalent, run.PACKAGE)
                for name, p in previous.items()
            }
            rows[module] = report.combine_parts(previous | {report.part_name(*args.part): part})
        else:
            cost = run.run_module(module, args.max_children)
            row = report.summarise(module, run.verdicts(), equivalent, run.PACKAGE)
            rows[module] = row | cost._asdict() | {"run": header}
        merged = {"mutmut": importlib.metadata.version("mutmut"), "modules": [*rows.values()]}
        report_json.write_text(json.dumps(merged, indent=2) + "\n")
        (args.out / "mutation.md").write_text(report.markdown(merged, merged["modules"]))
    print((args.out / "mutation.md").read_text())


def _previous_rows(path: pathlib.Path) -> dict[str, dict]:
    """The report's rows by module: a run replaces the rows of its modules and keeps the rest."""
    if not path.is_file():
        return {}
    return {row["module"]: row for row in json.loads(path.read_text())["modules"]}


def _changed_since(commit: str, module: str) -> bool:
    path = f"salsa_optax/_src/{module}.py"
    revision = commit.split()[0]
    return subprocess.run(["git", "diff", "--quiet", revision, "--", path]).returncode != 0


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
