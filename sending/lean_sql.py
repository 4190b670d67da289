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
def _insert_sql(
    model: type[Model], vendor: str, rows: int, returning: bool, ignore_conflicts: bool = False
) -> str:
    connection = _connection_for(model)
    quote = connection.ops.quote_name
    fields = _insert_fields(model)
    columns = ", ".join(quote(field.column) for field in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {quote(model._meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"
    if ignore_conflicts:
        # The same syntax in SQLite (3.24+) and PostgreSQL
        sql += " ON CONFLICT DO NOTHING"
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
        None if isinstance(field, _PASS_THROUGH) and not field.is_relation else field
        for field in _insert_fields(model)
    )


def _connection_for(model: type[Model]) -> Any:
    return connections[router.db_for_write(model)]


def insert(
    objs: Sequence[Model], *, returning_pk: bool = False, ignore_conflicts: bool = False
) -> None:
    """INSERT objs (all of one model) in one statement; set obj.pk if returning_pk.

    With ignore_conflicts, rows that would break a unique constraint are
    skipped (their pk is not set).
    """
    if not objs:
        return
    model = type(objs[0])
    connection = _connection_for(model)
    params = _params(
        model,
        connection,
        ([getattr(obj, f.attname) for f in _insert_fields(model)] for obj in objs),
    )
    pks = _execute_insert(model, connection, len(objs), params, returning_pk, ignore_conflicts)
    for index, obj in enumerate(objs):
        if pks is not None:
            obj.pk = pks[index]
        obj._state.adding = False
        obj._state.db = connection.alias


def insert_rows(
    model: type[Model],
    rows: Sequence[dict[str, Any]],
    *,
    ignore_conflicts: bool = False,
    returning: str | None = None,
) -> list[Any] | None:
    """INSERT rows given as {attname: value} dicts, without building model instances.

    Fields a row leaves out get their model default. With returning (a
    column name), return that column's values for the rows actually
    inserted: with ignore_conflicts, the ones that didn't conflict.
    """
    if not rows:
        return [] if returning else None
    connection = _connection_for(model)
    fields = _insert_fields(model)
    values = (
        [row[f.attname] if f.attname in row else f.get_default() for f in fields] for row in rows
    )
    params = _params(model, connection, values)
    if returning is None:
        _execute_insert(model, connection, len(rows), params, False, ignore_conflicts)
        return None
    quote = connection.ops.quote_name
    column = quote(model._meta.get_field(returning).column)
    sql = _insert_sql(model, connection.vendor, len(rows), False, ignore_conflicts)
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {column}", params)
        return [value for (value,) in cursor.fetchall()]


def _params(model: type[Model], connection: Any, rows: Iterable[list[Any]]) -> list[Any]:
    """Flatten rows of Python values into database parameters, as the fields convert them."""
    fields = _insert_fields(model)
    converters = _converters(model, connection.vendor)
    params: list[Any] = []
    for row in rows:
        for field, converter, value in zip(fields, converters, row, strict=True):
            if converter is not None:
                value = converter.get_db_prep_save(value, connection)
            elif value is not None and not isinstance(value, (str, int)):
                value = field.get_db_prep_save(value, connection)  # e.g. a lazy string
            params.append(value)
    return params


def _execute_insert(
    model: type[Model],
    connection: Any,
    count: int,
    params: list[Any],
    returning_pk: bool,
    ignore_conflicts: bool,
) -> list[Any] | None:
    if ignore_conflicts and returning_pk:
        raise ValueError("insert() can't return pks of rows it may skip")
    returning = returning_pk and connection.features.can_return_columns_from_insert
    sql = _insert_sql(model, connection.vendor, count, returning, ignore_conflicts)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            return [pk for (pk,) in cursor.fetchall()]
        if returning_pk:
            # Without RETURNING (old SQLite): the last row's id, counting back.
            last = cursor.lastrowid
            return list(range(last - count + 1, last + 1))
    return None


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


def update_objects(objs: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write field_names of each obj (all of one model) back to its row.

    One prepared UPDATE run for all rows with executemany (a C loop in
    sqlite3, a pipeline in psycopg), far cheaper than a statement per row
    from Python or QuerySet.bulk_update's CASE expressions.
    """
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    fields = [meta.get_field(name) for name in field_names]
    connection = _connection_for(model)
    rows = [
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] + [obj.pk]
        for obj in objs
    ]
    sql = _update_sql(model, tuple(f.name for f in fields), ("id",), None, 0)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def _where_sql(
    model: type[Model],
    connection: Any,
    where: dict[str, Any],
    where_in: Sequence[tuple[str, Sequence[Any]]],
) -> tuple[str, list[Any]]:
    quote = connection.ops.quote_name
    meta = model._meta
    conditions, params = [], []
    for name, value in where.items():
        field = meta.get_field(name)
        conditions.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_value(value, connection))
    for name, values in where_in:
        field = meta.get_field(name)
        conditions.append(f"{quote(field.column)} IN ({', '.join(['%s'] * len(values))})")
        params.extend(field.get_db_prep_value(value, connection) for value in values)
    return " AND ".join(conditions) or "1 = 1", params


def select_column(
    model: type[Model],
    column: str,
    *,
    where: dict[str, Any],
    where_in: Sequence[tuple[str, Sequence[Any]]] = (),
    order_by_pk_desc: bool = False,
    limit: int | None = None,
) -> list[Any]:
    """SELECT one column's raw values WHERE field = value AND field IN (...)."""
    connection = connections[router.db_for_read(model)]
    quote = connection.ops.quote_name
    meta = model._meta
    conditions, params = _where_sql(model, connection, where, where_in)
    selected = quote(meta.get_field(column).column)
    sql = f"SELECT {selected} FROM {quote(meta.db_table)} WHERE {conditions}"
    if order_by_pk_desc:
        sql += f" ORDER BY {quote(meta.pk.column)} DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]


def select_objects(
    model: type[Model],
    *,
    where: dict[str, Any],
    where_in: Sequence[tuple[str, Sequence[Any]]] = (),
    for_update: bool = False,
) -> list[Model]:
    """Model instances WHERE field = value AND field IN (...), in pk order.

    Through Manager.raw(), so values get the same conversions as the ORM's
    (aware datetimes, JSON), without its query building. for_update locks
    the rows where the database can (PostgreSQL), inside a transaction.
    """
    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    meta = model._meta
    conditions, params = _where_sql(model, connection, where, where_in)
    columns = ", ".join(quote(field.column) for field in meta.concrete_fields)
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {conditions} "
        f"ORDER BY {quote(meta.pk.column)}"
    )
    if for_update and connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    return list(model._default_manager.db_manager(connection.alias).raw(sql, params))
