"""The exceptions a user sees: a message naming what is wrong (or what happened) and what to do."""


class CnnlabError(Exception):
    """An error the user can fix. The command line prints it as one message, without a traceback."""


class Stopped(KeyboardInterrupt):
    """A run stopped on request (Ctrl-C, SIGTERM) and recorded as stopped; the message says how to resume it.
    A KeyboardInterrupt, so that whatever handles Ctrl-C (a sweep worker) handles it too."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code  # 128 + the signal's number, as a shell reports a process ended by it
