"""The one exception type for bad user input (the CLI maps it to exit status 2)."""


class InputError(ValueError):
    """Bad input from the user: a malformed file, an unknown name, an infeasible budget.

    The message is one sentence that names the offending field or file.
    """


class IgnoredFieldWarning(UserWarning):
    """A field of an untrusted file was ignored on purpose (e.g. a command in a table header)."""
