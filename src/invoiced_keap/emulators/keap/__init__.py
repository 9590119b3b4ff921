"""Keap emulator: REST v2 records, v1 REST hooks, OAuth2 and API keys, Keap's rate limits."""

from invoiced_keap.emulators.keap.app import KeapEmulator

__all__ = ["KeapEmulator"]
