"""The `invoiced-keap` command line: thin over the engine and the emulators."""

from __future__ import annotations

import signal
import threading
from enum import Enum

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


class Seed(str, Enum):
    demo = "demo"
    empty = "empty"


@app.command()
def emulate(
    invoiced_port: int = typer.Option(8001, help="Port for the Invoiced emulator (0 picks a free one)."),
    keap_port: int = typer.Option(8002, help="Port for the Keap emulator (0 picks a free one)."),
    seed: Seed = typer.Option(Seed.demo, help="Start with the sample account or with no data."),
    invoiced_key: str = typer.Option("test", help="API key the Invoiced emulator accepts."),
    keap_key: str = typer.Option("test", help="API key (PAT/SAK) the Keap emulator accepts."),
) -> None:
    """Run the Invoiced and Keap emulators on 127.0.0.1 until stopped (Ctrl-C)."""
    from invoiced_keap.emulators.invoiced import InvoicedEmulator
    from invoiced_keap.emulators.keap import KeapEmulator
    from invoiced_keap.emulators.sample import INVOICED_SAMPLE, KEAP_SAMPLE
    from invoiced_keap.emulators.serve import BackgroundServer

    invoiced = InvoicedEmulator(api_key=invoiced_key)
    keap = KeapEmulator(api_key=keap_key)
    if seed is Seed.demo:
        invoiced.seed(INVOICED_SAMPLE)
        keap.seed(KEAP_SAMPLE)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with BackgroundServer(invoiced.asgi(), port=invoiced_port) as invoiced_server, BackgroundServer(
        keap.asgi(), port=keap_port
    ) as keap_server:
        typer.echo(f"Invoiced emulator: {invoiced_server.url}  (API key {invoiced_key!r})")
        typer.echo(f"Keap emulator:     {keap_server.url}/crm/rest  (API key {keap_key!r})")
        typer.echo("Control: GET /_emulator/stats, POST /_emulator/reset, POST /_emulator/faults. Ctrl-C stops.")
        stop.wait()
