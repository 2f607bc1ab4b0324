"""A stand-in for a factory that records the keyword arguments an alias forwards to it."""

from typing import Any

import optax


def record_calls(monkeypatch: Any, module: Any, name: str) -> list[dict[str, Any]]:
    """Replaces ``module.name`` by a factory that appends its keyword arguments to the list
    returned and gives ``optax.identity()``; ``monkeypatch.undo()`` restores it."""
    calls = []
    monkeypatch.setattr(module, name, lambda **kwargs: calls.append(kwargs) or optax.identity())
    return calls
