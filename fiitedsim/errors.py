"""The one exception type that means "the user's input is wrong".

The CLI turns it into a one-line message and exit code 2; anything else that
escapes is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input from the user: a file, a flag value or a combination of them."""


def refuse_duplicate_columns(source, names, used=None) -> None:
    """A file with two columns of one name is ambiguous (readers silently take the first, or fail): refuse it.

    With `used`, only those names matter (files with many columns may repeat ones that are never read).
    """
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    twice = [n for n, count in seen.items() if count > 1 and (used is None or n in used)]
    if twice:
        raise InputError(f"{source}: {seen[twice[0]]} columns are named {twice[0]!r}; rename all but one of them "
                         "(it is not clear which one is meant)")
