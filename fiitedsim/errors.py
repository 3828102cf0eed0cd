"""The one exception type that means "the user's input is wrong".

The CLI turns it into a one-line message and exit code 2; anything else that
escapes is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a flag value or a combination of them."""
