from __future__ import annotations

import pytest
from sqlalchemy import text

from invoiced_keap.state import Store
from invoiced_keap.state.database import normalise_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@db:5432/sync", "postgresql+psycopg://u@db:5432/sync"),
        ("postgres://u@db/sync", "postgresql+psycopg://u@db/sync"),
        ("postgresql+psycopg2://u@db/sync", "postgresql+psycopg://u@db/sync"),
        ("postgresql+psycopg://u@db/sync", "postgresql+psycopg://u@db/sync"),
        ("sqlite:///invoiced-keap.db", "sqlite:///invoiced-keap.db"),
    ],
)
def test_postgresql_urls_use_psycopg_3(given: str, expected: str) -> None:
    assert normalise_url(given).render_as_string() == expected


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: object) -> None:
    with Store(f"sqlite:///{tmp_path}/state.db") as store, store.engine.connect() as connection:
        assert connection.scalar(text("PRAGMA journal_mode")) == "wal"
        assert connection.scalar(text("PRAGMA foreign_keys")) == 1
        assert connection.scalar(text("PRAGMA busy_timeout")) == 30_000
