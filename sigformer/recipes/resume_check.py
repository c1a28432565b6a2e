"""The check every resumable recipe makes before continuing a run: the recipe it is asked to
continue with must be the one the checkpoint was trained with.

A resumed optimiser restores its own learning rate, and a schedule rebuilt from a different
budget jumps mid-run, so a changed recipe would otherwise be ignored or half applied without
a word. Fields that only extend a run (e.g. the OFDM ``max_epochs``) are exempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields
from typing import Any


def _plain(value: Any) -> Any:
    """The JSON form of a value (tuples become lists), so saved and new values compare."""
    return json.loads(json.dumps(value, default=str))


def recipe_changes(saved: Mapping[str, Any], recipe: Any, exempt: Iterable[str] = ()
                   ) -> dict[str, tuple[Any, Any]]:
    """``{field: (saved, now)}`` for each field of the dataclass ``recipe`` whose value differs
    from ``saved`` (a field the checkpoint predates counts as its default), ``exempt`` left out.
    Fields the checkpoint holds but the recipe no longer has are ignored."""
    skip = set(exempt)
    changes = {}
    for f in fields(recipe):
        if f.name in skip:
            continue
        now = _plain(getattr(recipe, f.name))
        if f.name in saved:
            before = _plain(saved[f.name])
        elif f.default is not MISSING:
            before = _plain(f.default)
        elif f.default_factory is not MISSING:
            before = _plain(f.default_factory())
        else:
            continue  # a required field the checkpoint does not know: nothing to compare
        if before != now:
            changes[f.name] = (before, now)
    return changes


def refuse_changes(where: str, changes: Mapping[str, tuple[Any, Any]], how: str,
                   exempt: Iterable[str] = ()) -> None:
    """Raise :class:`~sigformer.checkpoint.CheckpointError` naming each changed field
    (``name saved -> now``) and how to proceed; nothing when ``changes`` is empty."""
    if not changes:
        return
    from ..checkpoint import CheckpointError

    listed = ", ".join(f"{name} {before!r} -> {now!r}" for name, (before, now) in changes.items())
    free = list(exempt)
    allowed = f" (only {', '.join(free)} may change on resume)" if free else ""
    raise CheckpointError(f"cannot resume from {where}: the recipe differs from the one it was "
                          f"trained with: {listed}. {how}{allowed}")
