"""Every JSON and TOML text fiitedsim reads from users (table lists, a trace's metadata, sweep files, results
folders) is parsed here, under one guard against deep nesting.

`'[' * 100000` made the parsers (and anything walking the result) raise RecursionError. `loads_json` and
`loads_toml` refuse nesting deeper than `MAX_DEPTH` with `TooDeep`: an InputError, and so a ValueError like
the parsers' own errors, which every caller's handler of bad syntax handles too (a damaged stored sweep point
is recomputed). No file of ours nests deeper than a few levels.
"""
from __future__ import annotations

import json
import tomllib

from .errors import InputError

#: Arrays and objects (tables) inside each other, at most.
MAX_DEPTH = 64


class TooDeep(InputError):
    """The text nests arrays or objects deeper than `MAX_DEPTH`."""

    def __init__(self):
        super().__init__(f"arrays or objects nested more than {MAX_DEPTH} levels deep")


def _check_depth(data) -> None:
    """Iteratively (a recursive walk would fail the same way): no container deeper than MAX_DEPTH."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if depth > MAX_DEPTH:
            raise TooDeep()
        stack.extend((child, depth + 1) for child in children)


def loads_json(text: str | bytes, **kw):
    """`json.loads(text, **kw)`, refusing nesting deeper than MAX_DEPTH (`TooDeep`)."""
    try:
        data = json.loads(text, **kw)
    except RecursionError:
        raise TooDeep() from None
    _check_depth(data)
    return data


def loads_toml(text: str) -> dict:
    """`tomllib.loads(text)`, refusing nesting deeper than MAX_DEPTH (`TooDeep`)."""
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise TooDeep() from None
    _check_depth(data)
    return data
