"""Invoiced emulator: `InvoicedEmulator().asgi()` serves the real paths (`/customers`, `/items`, ...)."""

from invoiced_keap.emulators.invoiced.app import InvoicedEmulator

__all__ = ["InvoicedEmulator"]
