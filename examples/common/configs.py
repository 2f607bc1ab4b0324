"""Configs: frozen dataclasses in ``<example>/configs/<name>.py``, overridden from the command line.

Each config module has ``get_config()`` returning a frozen dataclass; ``key=value`` assignments
(``--set`` on the command line) replace fields, with values read as Python literals and anything
that is not a literal kept as a string.

>>> import dataclasses
>>> @dataclasses.dataclass(frozen=True)
... class Config:
...   optimizer: str = "salsa"
...   learning_rate: float | None = None
>>> override(Config(), ["optimizer=adam", "learning_rate=3e-3"])
Config(optimizer='adam', learning_rate=0.003)
"""

import ast
import dataclasses
import importlib
from collections.abc import Sequence
from typing import Any


def load_config(package: str, name: str, assignments: Sequence[str] = ()) -> Any:
    """``get_config()`` of module ``package.name``, with ``key=value`` ``assignments`` applied.

    Args:
      package: the configs package, e.g. ``"examples.resnet.configs"``.
      name: the config module in it, e.g. ``"cpu"``.
      assignments: ``key=value`` strings (see :func:`override`).
    """
    return override(importlib.import_module(f"{package}.{name}").get_config(), assignments)


def override(config: Any, assignments: Sequence[str]) -> Any:
    """A copy of the dataclass ``config`` with each ``key=value`` of ``assignments`` applied.

    Raises:
      ValueError: for an assignment without ``=`` or with a key that is not a field.
    """
    fields = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"{assignment!r}: expected key=value with key one of {', '.join(sorted(fields))}."
            )
        changes[key] = _literal(value)
    return dataclasses.replace(config, **changes)


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
