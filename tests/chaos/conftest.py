"""The engine tests' `world` (both emulators on one manual clock, a store) for the regression tests of what chaos found."""

from tests.engine.conftest import store, world, world_clock

__all__ = ["store", "world", "world_clock"]
