"""Errors that reach the user as one line that says what is wrong and what to do."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SlarmBenchError(Exception):
    """An error the CLI prints as a single line (no traceback) and exits with status 2."""


class UnknownNameError(SlarmBenchError, KeyError):
    """A dataset, protocol, split or model name that does not exist."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(unknown_name_message(kind, name, self.known))

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ContractError(SlarmBenchError, ValueError):
    """A Sequence or Clip that violates the data contract."""


class StoreError(SlarmBenchError):
    """A prepared store that is missing, corrupt, or of another schema version."""


def unknown_name_message(kind: str, name: str, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known) or '(none)'}."


def check_name(kind: str, name: str, known: Iterable[str]) -> str:
    """Return `name` if it is in `known`, else raise UnknownNameError with a 'did you mean'."""
    known = list(known)
    if name not in known:
        raise UnknownNameError(kind, name, known)
    return name
