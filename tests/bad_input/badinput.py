"""The bad-input catalogue's case type: one bad input, the error it must raise (or the warning
it must give), and two regexes the message must match, one naming the problem and one naming
what was expected. ``scripts/error_table.py`` reads the same lists to write docs/errors.md."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

# What a new user got before this catalogue's fixes (issue 17's classification).
BEFORE = ("clear", "unclear", "crash", "silent", "hang", "lost")


@dataclass(frozen=True)
class Case:
    area: str
    id: str
    input: str  # the bad input, in words
    error: type[BaseException] | None  # None: a warning (``warning``) or an outcome case
    problem: str  # regex: the message names the problem ...
    expected: str  # ... and what was expected (or how to fix it)
    run: Callable[[Any], Any]
    warning: type[Warning] | None = None
    before: str = "clear"
    xfail: str | None = None

    @property
    def kind(self) -> str:
        if self.error is not None:
            return self.error.__name__
        if self.warning is not None:
            return self.warning.__name__
        return "no error (outcome)"


class Catalogue(list):
    """``CASES = Catalogue("files")``; ``@CASES.case(id, input, Error, problem, expected)``
    registers the decorated function ``fn(ctx)`` as a case."""

    def __init__(self, area: str):
        super().__init__()
        self.area = area

    def case(self, id: str, input: str, error: type[BaseException] | None, problem: str,
             expected: str, *, warning: type[Warning] | None = None, before: str = "clear",
             xfail: str | None = None):
        if before not in BEFORE:
            raise ValueError(f"before must be one of {BEFORE}, got {before!r}")
        if any(c.id == id for c in self):
            raise ValueError(f"duplicate case id {id!r}")

        def register(fn):
            self.append(Case(self.area, id, input, error, problem, expected, fn, warning,
                             before, xfail))
            return fn
        return register

    def params(self) -> list:
        return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.xfail)]
                             if c.xfail else []) for c in self]


def message_of(case: Case, ctx) -> str:
    """Run the case and return the message it produced (raising if it produced none)."""
    if case.error is not None:
        with pytest.raises(case.error) as info:
            case.run(ctx)
        return str(info.value)
    if case.warning is not None:
        with pytest.warns(case.warning) as caught:
            case.run(ctx)
        return "\n".join(str(w.message) for w in caught if issubclass(w.category, case.warning))
    text = case.run(ctx)  # outcome case: the function asserts the outcome, returns its report
    assert isinstance(text, str), "an outcome case returns the text the library reported"
    return text


def check(case: Case, ctx) -> None:
    message = message_of(case, ctx)
    assert re.search(case.problem, message, re.S), \
        f"message does not name the problem /{case.problem}/:\n{message}"
    assert re.search(case.expected, message, re.S), \
        f"message does not say what was expected /{case.expected}/:\n{message}"
