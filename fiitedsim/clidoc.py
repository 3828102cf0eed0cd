"""docs/cli.md, generated from the command line itself: every command, its help and every option with its default.

    python -m fiitedsim.clidoc > docs/cli.md

The options are declared once (`fiitedsim/options.py`; the knobs' in `ReplayConfig`'s fields) and the commands are
described once (their docstrings in `fiitedsim/cli.py`); this page is made
from them, and tests/test_docs.py checks that the committed page equals what
this prints, so it cannot go stale.
"""
from __future__ import annotations

import re
import sys

import typer

HEADER = """# Command line reference

Generated from the command line by `python -m fiitedsim.clidoc > docs/cli.md` (tests/test_docs.py checks that
this file is up to date); `fiitedsim COMMAND --help` prints the same. What the outputs hold is in
[formats.md](formats.md), how the commands behave in [usage.md](usage.md).
"""


def _plain(text: str) -> str:
    """Help text without rich markup: `[bold]X[/bold]` is **X**, an escaped `\\[` a bracket."""
    text = re.sub(r"\[bold\](.*?)\[/bold\]", r"**\1**", text)
    return text.replace("\\[", "[")


def _cell(text: str) -> str:
    return " ".join(_plain(text).split()).replace("|", "\\|")


def _is_argument(param) -> bool:
    return param.param_type_name == "argument"


def _default(param) -> str:
    if param.required:
        return "required"
    if getattr(param, "is_flag", False) or isinstance(param.default, bool):
        return "on" if param.default else "off"
    if param.default is None:
        return "none"
    return f"`{param.default}`"


def _names(param) -> str:
    if _is_argument(param):
        return f"`{param.name.upper()}`"
    return ", ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))


def _paragraphs(text: str) -> list[str]:
    """The blocks of a docstring or epilog: a block of TOML (a `[sweep]` table) becomes a fenced code block."""
    out = []
    for block in re.split(r"\n\s*\n", _plain(text).strip()):
        lines = [line.rstrip() for line in block.strip("\n").split("\n")]
        if lines[0].startswith("[sweep]"):
            out.append("```toml\n" + "\n".join(lines) + "\n```")
        else:
            text = " ".join(" ".join(lines).split())
            label, colon, rest = text.partition(": ")
            out.append(f"{label}: `{rest}`" if colon and label in ("Example", "Examples") else text)
    return out


def _usage(name: str, command) -> str:
    args = [p.name.upper() if p.required else f"[{p.name.upper()}]" for p in command.params if _is_argument(p)]
    return " ".join(["fiitedsim", name, "[OPTIONS]", *args])


def _command(name: str, command) -> list[str]:
    out = [f"## `fiitedsim {name}`", "", f"Usage: `{_usage(name, command)}`", ""]
    out += [p for para in _paragraphs(command.help or "") for p in (para, "")]
    params = [p for p in command.params if p.name != "help"]
    if params:
        out += ["| argument or option | default | meaning |", "|---|---|---|"]
        out += [f"| {_names(p)} | {_default(p)} | {_cell(getattr(p, 'help', None) or '')} |" for p in params]
        out.append("")
    if command.epilog:
        out += [p for para in _paragraphs(command.epilog) for p in (para, "")]
    return out


def markdown(app: typer.Typer | None = None) -> str:
    """The whole page."""
    if app is None:
        from .cli import app
    root = typer.main.get_command(app)
    out = [HEADER, " ".join(_plain(root.help or "").split()), ""]
    for name, command in root.commands.items():
        if hasattr(command, "commands"):  # a group: `fiitedsim import FORMAT`
            out += [f"## `fiitedsim {name}`", ""]
            out += [p for para in _paragraphs(command.help or "") for p in (para, "")]
            for sub, subcommand in command.commands.items():
                lines = _command(f"{name} {sub}", subcommand)
                out += ["#" + line if line.startswith("## ") else line for line in lines]
        else:
            out += _command(name, command)
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
