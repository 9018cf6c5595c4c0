"""Rows nobody refers to by id are inserted without SQLite's AUTOINCREMENT bookkeeping; the ids
that carry an order (operations: the apply order) keep it."""

from __future__ import annotations

import pytest
from django.db import connection

from audiences.models import Member, Operation
from dashboard.models import ImportProblem, ImportRow, SentRow

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's table definitions"),
]


def table_sql(model) -> str:  # type: ignore[no-untyped-def]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s",
            [model._meta.db_table],
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("model", [ImportRow, SentRow, ImportProblem, Member])
def test_bulk_rows_are_inserted_without_autoincrement(model):
    sql = table_sql(model)
    assert '"id" integer NOT NULL PRIMARY KEY' in sql and "AUTOINCREMENT" not in sql


def test_operations_keep_ids_that_only_grow():
    # Their ids are the order they are applied in: never one given again after a deletion.
    assert "AUTOINCREMENT" in table_sql(Operation)
