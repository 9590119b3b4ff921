from __future__ import annotations

import json

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from invoiced_keap.state import Store
from invoiced_keap.state.database import alembic_config
from invoiced_keap.state.models import Base

TABLES = {
    "lossy_carries",
    "runs",
    "links",
    "shadows",
    "watermarks",
    "intents",
    "failures",
    "review_items",
    "conflicts",
    "audit_log",
    "flow_locks",
    "reconciles",
    "keap_definitions",
    "receivables",
}


def table_names(store: Store) -> set[str]:
    return set(inspect(store.engine).get_table_names())


def test_migrate_creates_the_schema_from_empty(state_url: str) -> None:
    with Store(state_url) as store:
        assert table_names(store) == set()
        store.migrate()
        assert table_names(store) == TABLES | {"alembic_version"}
        assert set(Base.metadata.tables) == TABLES


def test_migrate_twice_is_harmless(store: Store) -> None:
    store.migrate()
    assert table_names(store) == TABLES | {"alembic_version"}


def test_models_and_migrations_agree(store: Store) -> None:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_removes_everything_and_upgrade_restores_it(store: Store) -> None:
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert table_names(store) == {"alembic_version"}
    store.migrate()
    assert table_names(store) == TABLES | {"alembic_version"}


def test_records_tagged_before_tag_names_were_kept_get_the_tag_configured_then(store: Store) -> None:
    """0008: `receivables.tag` is filled from the settings watermark, so a later rename takes that tag off."""
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
        connection.execute(text("INSERT INTO watermarks (stream, value, updated_at) VALUES "
                                "('receivables.settings', :value, CURRENT_TIMESTAMP)"),
                           {"value": json.dumps({"fields": [], "tag": "Chase", "currency": "USD"})})
        for customer, tagged in (("1", True), ("2", False), ("3", None)):
            connection.execute(text("INSERT INTO receivables (customer_id, figures, open_invoices, computed_at, pending, "
                                    "tagged) VALUES (:customer, '{}', 0, CURRENT_TIMESTAMP, false, :tagged)"),
                               {"customer": customer, "tagged": tagged})
        command.upgrade(config, "head")
    assert {customer: row.tag for customer, row in store.receivables(["1", "2", "3"]).items()} == {
        "1": "Chase", "2": None, "3": None}


def test_a_state_where_receivables_ran_asks_for_one_listing_of_open_invoices(store: Store) -> None:
    """0009: `receivables.opens_at` is new; where the step ran (its event cursor is set), its next pass lists the
    account's open invoices once (`receivables.relist`) to learn the dates of invoices dated ahead."""
    config = alembic_config()
    for ran in (False, True):
        with store.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0008")
            if ran:
                connection.execute(text("INSERT INTO watermarks (stream, value, updated_at) VALUES "
                                        "('receivables.events', '41', CURRENT_TIMESTAMP)"))
            command.upgrade(config, "head")
        assert ("receivables.relist" in store.watermarks()) is ran
