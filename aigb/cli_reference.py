"""docs/cli.md, the command-line reference, written from the ``aigb`` argparse parsers.

    python -m aigb.cli_reference              # rewrite docs/cli.md
    python -m aigb.cli_reference --check      # exit 1 when docs/cli.md differs from the parsers

The page is built from the parser objects (each command's help, description, epilog and
arguments), not from ``--help`` text, so it does not depend on the terminal's width or on how a
Python version wraps and labels help output. Building the parsers imports no torch: every command
imports its heavy modules only when it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["render", "main", "DEFAULT_OUT"]

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
"""Where the reference lives in a source checkout."""

_HEADER = """\
# Command-line reference

Every `aigb` command and option, generated from the command-line parsers by
`python -m aigb.cli_reference` (a test fails when this page is out of date). The workflow pages say
how the commands fit together: see the [documentation index](../README.md#documentation).
"""


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _expand(text: str | None, action: argparse.Action, prog: str) -> str:
    """``action.help`` with its ``%(...)s`` fields filled in, as argparse fills them for --help."""
    if not text:
        return ""
    params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    for name, value in list(params.items()):
        if hasattr(value, "__name__"):
            params[name] = value.__name__
    if params.get("choices") is not None:
        params["choices"] = ", ".join(str(c) for c in params["choices"])
    return text % params


def _prose(text: str | None, prog: str) -> str:
    """A description or epilog as argparse prints it (``%(prog)s`` filled in only where present)."""
    if not text:
        return ""
    return text % {"prog": prog} if "%(prog)" in text else text


def _value(action: argparse.Action) -> str:
    """What an argument takes, e.g. ``N``, ``{cpa,max-return}``, ``SPEC [SPEC ...]``, ``LO HI``."""
    if action.nargs == 0:
        return ""
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        name = "{" + ",".join(str(c) for c in action.choices) + "}"
    elif isinstance(action.metavar, tuple):
        return " ".join(action.metavar)
    elif action.metavar is not None:
        name = action.metavar
    elif action.option_strings:
        name = action.dest.upper()
    else:
        name = action.dest
    if isinstance(action.nargs, int):
        return " ".join([name] * action.nargs)
    return {None: name, "?": f"[{name}]", "*": f"[{name} ...]", "+": f"{name} [{name} ...]"}.get(action.nargs, name)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _synopsis(path: str, parser: argparse.ArgumentParser) -> str:
    parts = [path]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or isinstance(action, argparse._SubParsersAction):
            continue
        value = _value(action)
        if action.option_strings:
            item = f"{action.option_strings[0]}{' ' + value if value else ''}"
            parts.append(item if action.required else f"[{item}]")
        else:
            parts.append(value)
    sub = _subparsers(parser)
    if sub is not None:
        parts.append("{" + ",".join(sub.choices) + "} ...")
    return " ".join(parts)


def _arguments(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        name = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{_value(action)}`"
        value = _value(action) if action.option_strings else ""
        default = ""
        if not action.required and action.nargs != 0 and not any(action.default is x for x in (None, False, argparse.SUPPRESS)):
            d = action.default
            default = " ".join(str(x) for x in d) if isinstance(d, (list, tuple)) else str(d)
        required = "yes" if action.required else ""
        rows.append(f"| {name} | {_cell(f'`{value}`' if value else '')} | {_cell(f'`{default}`' if default else '')} "
                    f"| {required} | {_cell(_expand(action.help, action, prog))} |")
    if not rows:
        return []
    return ["| argument | value | default | required | what it does |", "|---|---|---|---|---|", *rows]


def _section(path: str, parser: argparse.ArgumentParser, summary: str, level: int) -> list[str]:
    prog = parser.prog
    lines = [f"{'#' * level} `{path}`", ""]
    if summary:
        lines += [summary[:1].upper() + summary[1:] + ".", ""]
    lines += ["```", _synopsis(path, parser), "```", ""]
    description = _prose(parser.description, prog)
    if description:
        lines += [" ".join(description.split()), ""]
    lines += _arguments(parser, prog)
    if lines[-1] != "":
        lines.append("")
    epilog = _prose(parser.epilog, prog)
    if epilog:
        lines += ["```", epilog.rstrip("\n"), "```", ""]
    sub = _subparsers(parser)
    if sub is not None:
        helps = {a.dest: a.help for a in sub._choices_actions}
        for name, child in sub.choices.items():
            lines += _section(f"{path} {name}", child, helps.get(name) or "", level + 1)
    return lines


def render() -> str:
    """The whole of docs/cli.md as text."""
    from aigb.cli import build_parser

    parser = build_parser()
    sub = _subparsers(parser)
    assert sub is not None, "the aigb parser has no commands"
    helps = {a.dest: a.help for a in sub._choices_actions}
    lines = [_HEADER, "## Commands", ""]
    for name in sub.choices:
        anchor = f"aigb-{name}"
        lines.append(f"- [`aigb {name}`](#{anchor}): {_cell(helps.get(name) or '')}")
    lines.append("")
    for name, child in sub.choices.items():
        lines += _section(f"aigb {name}", child, helps.get(name) or "", 2)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aigb.cli_reference",
                                     description="Write docs/cli.md from the aigb command-line parsers.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="file to write or check (default: docs/cli.md)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file differs from the parsers")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
        if current != text:
            print(f"{args.out}: out of date with the aigb command-line parsers; regenerate it with "
                  f"python -m aigb.cli_reference", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    from aigb.data.parquet import atomic_output

    with atomic_output(args.out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
