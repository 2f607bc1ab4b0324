"""Task registry of the quality benchmark: ``name -> module``, imported only when asked for.

Each module defines ``task() -> Task`` (see :mod:`benchmarks.tasks.base`) and its model classes.
"""

import importlib

from benchmarks.tasks.base import Budget, Data, Task

TASKS = {
    "digits_mlp": "benchmarks.tasks.digits_mlp",
    "mnist1d_cnn": "benchmarks.tasks.mnist1d_cnn",
    "fashion_resnet": "benchmarks.tasks.fashion_resnet",
    "shakespeare_char": "benchmarks.tasks.shakespeare_char",
    "rotten_tomatoes_minilm": "benchmarks.tasks.rotten_tomatoes_minilm",
}


def get_task(name: str) -> Task:
    """The task registered as ``name``."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).task()


__all__ = ["TASKS", "Budget", "Data", "Task", "get_task"]
