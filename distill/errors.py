"""The one exception type for bad input: entry scripts print it as a single line and exit non-zero."""


class UsageError(ValueError):
    """Bad input from the user (file, column, label, flag, model pairing).

    The message names the problem and the fix; entry scripts print it without a traceback.
    """
