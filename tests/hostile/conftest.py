"""The engine tests' `world` (both emulators on one manual clock, a store) for the hostile-input corpus."""

from tests.engine.conftest import store, world, world_clock

__all__ = ["store", "world", "world_clock"]
