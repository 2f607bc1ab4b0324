"""Test-run set-up: one persistent XLA compilation cache, and a fast order under mutmut.

One persistent XLA compilation cache serves a test run, shared by pytest-xdist's workers.

Tests build the same optimizers on the same problems many times, each time as a new jitted
function that traces again; the persistent cache compiles each distinct computation once per run
(a mutated or changed computation has another cache key). It lives in pytest's temporary folder of
the run, or in a folder removed at the end of a run without workers. A cache folder already named
by the environment (``JAX_COMPILATION_CACHE_DIR``, as the mutation runs set it) is kept.

Under mutmut (``MUTANT_UNDER_TEST`` set), a mutant's tests run in the order most likely to kill it
soon, since the run stops at the first failure: first the tests that killed other mutants of the
same function (most kills first; each kill is appended to ``mutmut-kills.txt`` in mutmut's working
copy), then the rest fastest first, by the durations of mutmut's own clean run
(``mutmut-stats.json``). Mutants of one function mostly die by the same few tests.
"""

import collections
import json
import os
import pathlib
import shutil
import tempfile

import jax

_OWNED = []


def pytest_configure(config):
    if jax.config.jax_compilation_cache_dir:
        return
    worker_basetemp = config.option.basetemp if os.environ.get("PYTEST_XDIST_WORKER") else None
    if worker_basetemp:
        # A worker's basetemp is a sub-folder of the run's, which every worker shares.
        folder = pathlib.Path(worker_basetemp).parent / "jax_cache"
    else:
        folder = pathlib.Path(tempfile.mkdtemp(prefix="salsa_optax_tests_jax_cache_"))
        _OWNED.append(folder)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    del config
    for folder in _OWNED:
        shutil.rmtree(folder, ignore_errors=True)


def _working_copy() -> pathlib.Path:
    return pathlib.Path(__file__).resolve().parents[1]


def _mutated_function() -> str | None:
    """The mutated function's name under mutmut (``...x_name`` of ``...x_name__mutmut_7``)."""
    function, marker, _ = os.environ.get("MUTANT_UNDER_TEST", "").rpartition("__mutmut_")
    return function if marker else None


def pytest_collection_modifyitems(config, items):
    del config
    function = _mutated_function()
    stats = _working_copy() / "mutmut-stats.json"
    if function is None or not stats.is_file():
        return
    durations = json.loads(stats.read_text())["duration_by_test"]
    kills_file = _working_copy() / "mutmut-kills.txt"
    lines = kills_file.read_text().splitlines() if kills_file.is_file() else []
    kills = collections.Counter(
        test for killed, _, test in (line.partition("\t") for line in lines) if killed == function
    )
    items.sort(key=lambda item: (-kills[item.nodeid], durations.get(item.nodeid, 0.0)))


def pytest_runtest_logreport(report):
    function = _mutated_function()
    if function is not None and report.failed:
        # One short line per write in append mode: mutmut's parallel children do not interleave.
        with open(_working_copy() / "mutmut-kills.txt", "a") as kills:
            kills.write(f"{function}\t{report.nodeid}\n")
