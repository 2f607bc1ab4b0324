"""Test-run set-up: one persistent XLA compilation cache, and a fast order under mutmut.

One persistent XLA compilation cache serves a test run, shared by pytest-xdist's workers.

Tests build the same optimizers on the same problems many times, each time as a new jitted
function that traces again; the persistent cache compiles each distinct computation once per run
(a mutated or changed computation has another cache key). It lives in pytest's temporary folder of
the run, or in a folder removed at the end of a run without workers. A cache folder already named
by the environment (``JAX_COMPILATION_CACHE_DIR``, as the mutation runs set it) is kept.

Under mutmut (``MUTANT_UNDER_TEST`` set), a mutant's tests run fastest first, by the durations of
mutmut's own clean run (``mutmut-stats.json`` in its working copy): the run stops at the first
failure, and most mutants are killed by a fast test.
"""

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


def pytest_collection_modifyitems(config, items):
    del config
    stats = pathlib.Path(__file__).resolve().parents[1] / "mutmut-stats.json"
    if not os.environ.get("MUTANT_UNDER_TEST") or not stats.is_file():
        return
    durations = json.loads(stats.read_text())["duration_by_test"]
    items.sort(key=lambda item: durations.get(item.nodeid, 0.0))
