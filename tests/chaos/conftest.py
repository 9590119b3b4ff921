"""The engine tests' `world` (both emulators on one manual clock, a store) for the regression tests of what chaos found."""

from tests.engine.conftest import database_url_postgresql, store, world, world_clock

__all__ = ["database_url_postgresql", "store", "world", "world_clock"]
