"""How a slow first decode (or extraction) tells the person waiting how far it is, without data importing the CLI:
the caller passes a function, the command line one that draws a bar."""

from __future__ import annotations

from typing import Callable, Optional

# progress(done, total, what): told how far a slow first decode is; called with done=0 when one begins
Progress = Callable[[int, int, str], None]


def counter(progress: Optional[Progress], total: int, what: str) -> Callable[[], None]:
    """Report the start of `what` now; the function returned is called once per item done and reports
    about every half percent (a caller's bar needs no more) and at the end."""
    if progress is None:
        return lambda: None
    progress(0, total, what)
    done, every = 0, max(total // 200, 1)

    def tick() -> None:
        nonlocal done
        done += 1
        if done % every == 0 or done == total:
            progress(done, total, what)

    return tick
