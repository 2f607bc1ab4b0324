"""Per-module mutation scores, and the equivalent mutants the score leaves out."""

import fnmatch
from pathlib import Path
from typing import Any

import tomllib

EQUIVALENT = Path(__file__).with_name("equivalent.toml")
_COUNTED = ("killed", "survived", "timeout")


def load_equivalent(path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant name -> why it computes what the original computes (the committed list)."""
    entries = tomllib.loads(path.read_text())
    return {name: " ".join(entry["reason"].split()) for name, entry in entries.items()}


def summarise(
    module: str, verdicts: dict[str, str], equivalent: dict[str, str], package: str
) -> dict[str, Any]:
    """Counts of one module's verdicts; score = killed / (total - equivalent).

    A listed equivalent mutant that was killed is not equivalent (or the list is stale after an
    edit renumbered the mutants): it is counted as killed and reported under ``stale``.
    """
    prefix = f"{package}.{module}."
    mine = {name: status for name, status in verdicts.items() if name.startswith(prefix)}
    listed = {name for name in equivalent if name.startswith(prefix)}
    stale = sorted(name for name in listed if mine.get(name, "killed") == "killed")
    excluded = listed - set(stale)
    counts = {status: 0 for status in (*_COUNTED, "other")}
    for name, status in mine.items():
        if name not in excluded:
            counts[status if status in _COUNTED else "other"] += 1
    scored = len(mine) - len(excluded)
    return {
        "module": module,
        "total": len(mine),
        **counts,
        "equivalent": len(excluded),
        "score": counts["killed"] / scored if scored else None,
        "survivors": sorted(
            name for name, status in mine.items() if status != "killed" and name not in excluded
        ),
        "equivalent_mutants": {name: equivalent[name] for name in sorted(excluded)},
        "stale": stale,
    }


def rerun_row(
    full: dict[str, Any], verdicts: dict[str, str], equivalent: dict[str, str], package: str
) -> dict[str, Any]:
    """``full``, a module's row of a run over all its mutants, after its mutants not killed were
    run again (``verdicts``) against tests added since, the module's source being unchanged.

    A mutant killed by the full run stays killed: tests were only added. A mutant not run again
    (listed equivalent since) keeps its status, "survived".
    """
    not_killed = [*full["survivors"], *full["equivalent_mutants"]]
    row = summarise(
        full["module"],
        {name: verdicts.get(name, "survived") for name in not_killed},
        equivalent,
        package,
    )
    killed = row["killed"] + full["killed"]
    scored = full["total"] - row["equivalent"]
    return row | {
        "total": full["total"],
        "killed": killed,
        "score": killed / scored if scored else None,
    }


def parse_part(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``, the K-th of N parts of a module's mutants (N divides 10).

    Examples:
      >>> parse_part("2/5")
      (2, 5)
    """
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit() and int(n) in (1, 2, 5, 10) and 1 <= int(k) <= int(n)):
        raise ValueError(f"a part is K/N with N in 1, 2, 5, 10 and 1 <= K <= N, got {text!r}")
    return int(k), int(n)


def part_name(k: int, n: int) -> str:
    return f"{k}/{n}"


def part_pattern(prefix: str, k: int, n: int) -> str:
    """The mutant names of part ``k`` of ``n`` under ``prefix``: those whose number ends in a digit
    ``d`` with ``d % n == k - 1`` (an fnmatch pattern, as ``mutmut run`` takes).

    Examples:
      >>> part_pattern("pkg.transform.", 2, 5)
      'pkg.transform.*[16]'
    """
    digits = "".join(str(d) for d in range(10) if d % n == k - 1)
    return f"{prefix}*[{digits}]"


def combine_parts(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A module's row from the rows of the parts of its mutants run so far (same source).

    Examples:
      >>> part = {"module": "m", "total": 4, "killed": 3, "survived": 1, "timeout": 0,
      ...         "other": 0, "equivalent": 0, "survivors": ["m.x_1"], "equivalent_mutants": {},
      ...         "stale": [], "wall_seconds": 1.0, "cpu_seconds": 2.0, "run": {"date": "d"}}
      >>> row = combine_parts({"1/2": part, "2/2": part | {"survivors": ["m.x_2"]}})
      >>> row["total"], row["score"], row["survivors"], sorted(row["parts"])
      (8, 0.75, ['m.x_1', 'm.x_2'], ['1/2', '2/2'])
      >>> combine_parts({"1/2": part | {"stale": ["m.x_3", "m.x_4"]}})["stale"]  # x_3: part 2's
      ['m.x_4']
    """
    ordered = [parts[name] for name in sorted(parts)]
    summed = {
        key: sum(part[key] for part in ordered)
        for key in (*_COUNTED, "total", "other", "equivalent", "wall_seconds", "cpu_seconds")
    }
    scored = summed["total"] - summed["equivalent"]
    return {
        "module": ordered[0]["module"],
        **summed,
        "score": summed["killed"] / scored if scored else None,
        "survivors": sorted(name for part in ordered for name in part["survivors"]),
        "equivalent_mutants": dict(
            sorted(item for part in ordered for item in part["equivalent_mutants"].items())
        ),
        # A part's stale entries are those of its own mutants (equivalent entries of the parts
        # not run yet are not stale).
        "stale": sorted(
            name
            for key, part in sorted(parts.items())
            for name in part["stale"]
            if fnmatch.fnmatch(name, part_pattern("", *parse_part(key)))
        ),
        # The newest part's run: the module's source is that of every part.
        "run": max((part["run"] for part in ordered), key=lambda run: run["date"]),
        "parts": parts,
    }


def markdown(header: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The report: one table row per module, then per module its runs and the mutants its score
    leaves out."""
    lines = [
        "# Mutation testing",
        "",
        f"- mutmut {header['mutmut']}; score = killed / (total − equivalent); a timeout counts "
        "against the score; wall and CPU time are those of the run over all the module's mutants "
        "(summed over its parts for a module run in parts, whose row counts the parts run)",
        "- each module's section gives the command, commit and date of its run",
        "",
        "| module | total | killed | survived | timeout | other | equivalent | score "
        "| wall (s) | CPU (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        score = "n/a" if row["score"] is None else f"{100 * row['score']:.1f} %"
        parts = ""
        if "parts" in row:
            parts = f" (parts {', '.join(sorted(row['parts']))})"
        lines.append(
            f"| `{row['module']}`{parts} | {row['total']} | {row['killed']} | {row['survived']} "
            f"| {row['timeout']} | {row['other']} | {row['equivalent']} | {score} "
            f"| {row['wall_seconds']:.0f} | {row['cpu_seconds']:.0f} |"
        )
    for row in rows:
        lines += ["", f"## `{row['module']}`", ""]
        if "parts" in row:
            lines += [
                _run_line(f"part {name}", part["run"])
                for name, part in sorted(row["parts"].items())
            ]
        else:
            lines.append(_run_line("run", row["run"]))
        if "rerun" in row:
            names = len(row["rerun"]["mutants"])
            lines.append(_run_line(f"its {names} mutants not killed run again", row["rerun"]))
        lines += [f"- not killed: `{name}`" for name in row["survivors"]]
        lines += [
            f"- equivalent: `{name}`: {reason}"
            for name, reason in row["equivalent_mutants"].items()
        ]
        lines += [f"- stale equivalent entry (killed or gone): `{name}`" for name in row["stale"]]
        if not (row["survivors"] or row["equivalent_mutants"] or row["stale"]):
            lines.append("Every mutant killed.")
    lines += [
        "",
        "See a mutant with `mutmut show NAME`; list one as equivalent, with the reason, in "
        "`benchmarks/mutation/equivalent.toml`.",
    ]
    return "\n".join(lines) + "\n"


def _run_line(what: str, run: dict[str, Any]) -> str:
    return f"- {what}: `{run['command']}` at {run['commit']}, {run['date']}"
