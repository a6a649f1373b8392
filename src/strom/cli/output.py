"""How client commands print: a rich table (the default) or JSON (``--output json``).

Results go to stdout: a table for people, or one JSON document (consume: one JSON object per
line) for scripts. Notes, warnings and progress go to stderr, so ``strom ... --output json | jq``
always sees pure JSON.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, overload

import click

F = TypeVar("F", bound=Callable[..., Any])

TABLE = "table"
JSON = "json"


_OUTPUT_HELP = "Print a table for people or JSON for scripts."


@overload
def output_option(f: F, *, help: str = _OUTPUT_HELP) -> F: ...


@overload
def output_option(f: None = None, *, help: str = _OUTPUT_HELP) -> Callable[[F], F]: ...


def output_option(f: F | None = None, *, help: str = _OUTPUT_HELP) -> F | Callable[[F], F]:
    """``--output table|json`` (default table); ``@output_option`` or ``@output_option(help=...)``."""

    def decorate(func: F) -> F:
        return click.option(
            "--output", type=click.Choice([TABLE, JSON]), default=TABLE, show_default=True, help=help,
        )(func)

    return decorate(f) if f is not None else decorate


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            # rich would exit 1 on its own; the CLI ends every command the same way (cli.main).
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    console = PipeConsole(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Piped output: no colours, and never wrapped mid-cell (tables size to their content).
        console = PipeConsole(stderr=stderr, highlight=False, no_color=True, width=max(console.width, 10_000))
    return console


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def print_table(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    title: str | None = None,
    right: Iterable[str] = (),
) -> None:
    """A borderless table on stdout; ``right`` names the numeric columns to right-align."""
    from rich import box
    from rich.table import Table

    right = set(right)
    console = _console()
    if title:
        console.print(title, style="bold")
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, column in enumerate(columns):
        # the first column names the row: never folded (long values fold instead)
        table.add_column(column, justify="right" if column in right else "left", overflow="fold", no_wrap=i == 0)
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    console.print(table)


def print_fields(fields: Sequence[tuple[str, Any]], *, title: str | None = None) -> None:
    """``name  value`` lines (a vertical table) on stdout."""
    from rich.table import Table

    console = _console()
    if title:
        console.print(title, style="bold")
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in fields:
        table.add_row(name, "-" if value is None else str(value))
    console.print(table)


def note(message: str) -> None:
    """A message for the person at the terminal (stderr)."""
    click.echo(message, err=True)


def stderr_console() -> Any:
    return _console(stderr=True)


def stdout_is_pipe() -> bool:
    return not sys.stdout.isatty()
