"""The exceptions a user sees: a message naming what is wrong (or what happened) and what to do."""

from __future__ import annotations

import difflib
from typing import Iterable


class CnnlabError(Exception):
    """An error the user can fix. The command line prints it as one message, without a traceback."""


class Stopped(KeyboardInterrupt):
    """A run stopped on request (Ctrl-C, SIGTERM) and recorded as stopped; the message says how to resume it.
    A KeyboardInterrupt, so that whatever handles Ctrl-C (a sweep worker) handles it too."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code  # 128 + the signal's number, as a shell reports a process ended by it


def close_names(name: str, names: Iterable[str], n: int = 3) -> list[str]:
    """The known names closest to a misspelt one, best first: a name made of its words' initials (learning_rate:
    lr), then difflib's close matches."""
    names = [str(x) for x in names if x]
    words = [w for w in str(name).replace("-", "_").split("_") if w]
    initials = [x for x in names if len(words) > 1 and x == "".join(w[0] for w in words)]
    return list(dict.fromkeys(initials + difflib.get_close_matches(str(name), names, n=n)))[:n]


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """' (did you mean X?)' (or 'X or Y') for a name looked up among `names`; empty when none is close."""
    close = close_names(name, names)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
