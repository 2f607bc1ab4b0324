"""Runs mutmut on one module of ``salsa_optax/_src`` at a time and reads back every verdict."""

import os
import pathlib
import re
import resource
import shutil
import subprocess
import sys
import time
from typing import NamedTuple

# One XLA thread per test process: the machine is shared, and mutmut runs its own workers. The
# persistent compilation cache halves a mutant's test time: most of what its tests compile is
# untouched by the mutation (a mutated computation has another cache key).
ENV = {
    "JAX_PLATFORMS": "cpu",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "JAX_COMPILATION_CACHE_DIR": os.path.abspath("mutants/jax-cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
PACKAGE = "salsa_optax._src"
_RESULT_LINE = re.compile(r"^\s+(?P<name>\S+): (?P<status>.+)$")


class ModuleRun(NamedTuple):
    """The cost of one module's mutation run (mutant generation and stats included)."""

    wall_seconds: float
    cpu_seconds: float


# What a run keeps of mutants/: the compilation cache, and which tests killed which function's
# mutants (tests/conftest.py runs those first: a heuristic order, harmless when out of date).
KEPT = (pathlib.Path(ENV["JAX_COMPILATION_CACHE_DIR"]).name, "mutmut-kills.txt")


def fresh_working_copy() -> None:
    """Empties mutants/ but for ``KEPT``: mutmut's cached test-to-function map goes stale when
    the sources change (every mutant then reads "no tests"), so each run rebuilds it."""
    for path in pathlib.Path("mutants").glob("*"):
        if path.name not in KEPT:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def run_module(module: str, max_children: int, names: list[str] | None = None) -> ModuleRun:
    """``mutmut run`` on every mutant of ``salsa_optax/_src/<module>.py``, or on ``names``."""
    command = [sys.executable, "-m", "mutmut", "run", f"--max-children={max_children}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    targets = names if names is not None else [f"{PACKAGE}.{module}.*"]
    subprocess.run([*command, *targets], env=os.environ | ENV, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ModuleRun(wall_seconds=wall, cpu_seconds=cpu)


def verdicts() -> dict[str, str]:
    """Every mutant's last verdict (``killed``, ``survived``, ``timeout``...) by mutant name."""
    output = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        env=os.environ | ENV,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {
        match["name"]: match["status"]
        for match in map(_RESULT_LINE.match, output.splitlines())
        if match
    }
