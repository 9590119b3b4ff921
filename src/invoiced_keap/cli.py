"""The `invoiced-keap` command line: thin over the engine and the emulators."""

from __future__ import annotations

import typer

from invoiced_keap import __version__

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Two-way sync between Invoiced and Keap.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"invoiced-keap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Two-way sync between Invoiced and Keap."""
