"""Lean INSERT and UPDATE for the send path's hot writes.

Recording a send brackets every ESP call with a few writes. Through the
ORM's query compiler each costs far more Python time than the database
spends on it, enough to slow sending by a third (bench/send.py). These
helpers build each statement's SQL once per model and database vendor,
and convert values with the model fields' own ``get_db_prep_save``, so
types (JSON, datetimes, files) are stored exactly as the ORM would store
them. They are for plain rows of the send path only: no signals, no
``save()`` overrides, no multi-table models.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from django.db import connections, models, router
from django.db.models import Model


@cache
def _insert_sql(model: type[Model], vendor: str, rows: int, returning: bool) -> str:
    connection = _connection_for(model)
    quote = connection.ops.quote_name
    fields = _insert_fields(model)
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"
    if returning:
        sql += f" RETURNING {quote(model._meta.pk.column)}"
    return sql


@cache
def _insert_fields(model: type[Model]) -> tuple:
    return tuple(field for field in model._meta.concrete_fields if not field.primary_key)


# Field types whose Python value is already what the database driver takes
# (get_db_prep_save would only return it unchanged, at a cost per value).
_PASS_THROUGH = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
)


@cache
def _converters(model: type[Model], vendor: str) -> tuple:
    """Per insert field: None where the value passes through, else the field itself."""
    return tuple(
        None
        if isinstance(field, _PASS_THROUGH)
        and not field.is_relation
        and not getattr(field, "choices_enum", None)
        else field
        for field in _insert_fields(model)
    )


def _connection_for(model: type[Model]) -> Any:
    return connections[router.db_for_write(model)]


def insert(objs: Sequence[Model], *, returning_pk: bool = False) -> None:
    """INSERT objs (all of one model) in one statement; set obj.pk if returning_pk."""
    if not objs:
        return
    model = type(objs[0])
    connection = _connection_for(model)
    fields = _insert_fields(model)
    params: list[Any] = []
    for obj in objs:
        params.extend(
            field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields
        )
    returning = returning_pk and connection.features.can_return_columns_from_insert
    sql = _insert_sql(model, connection.vendor, len(objs), returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
        elif returning_pk:
            # Without RETURNING (old SQLite): the last row's id, counting back.
            last = cursor.lastrowid
            for offset, obj in enumerate(reversed(objs)):
                obj.pk = last - offset
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias


@cache
def _update_sql(
    model: type[Model],
    set_names: tuple[str, ...],
    where_names: tuple[str, ...],
    in_name: str | None,
    in_count: int,
) -> str:
    connection = _connection_for(model)
    quote = connection.ops.quote_name
    meta = model._meta
    assignments = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in set_names)
    conditions = [f"{quote(meta.get_field(name).column)} = %s" for name in where_names]
    if in_name is not None:
        placeholders = ", ".join(["%s"] * in_count)
        conditions.append(f"{quote(meta.get_field(in_name).column)} IN ({placeholders})")
    return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {' AND '.join(conditions)}"


def update(
    model: type[Model],
    values: dict[str, Any],
    *,
    where: dict[str, Any],
    where_in: tuple[str, Iterable[Any]] | None = None,
) -> int:
    """UPDATE model SET values WHERE field = value AND ... [AND field IN (...)]; return rows."""
    connection = _connection_for(model)
    meta = model._meta
    set_names = tuple(values)
    where_names = tuple(where)
    params = [
        meta.get_field(name).get_db_prep_save(value, connection) for name, value in values.items()
    ]
    params += [
        meta.get_field(name).get_db_prep_value(value, connection) for name, value in where.items()
    ]
    in_name, in_count = None, 0
    if where_in is not None:
        in_name, in_values = where_in
        in_values = list(in_values)
        in_count = len(in_values)
        field = meta.get_field(in_name)
        params += [field.get_db_prep_value(value, connection) for value in in_values]
    sql = _update_sql(model, set_names, where_names, in_name, in_count)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
