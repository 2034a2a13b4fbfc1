"""The one exception type a user sees: a message naming what is wrong and what to do."""


class CnnlabError(Exception):
    """An error the user can fix. The command line prints it as one message, without a traceback."""
