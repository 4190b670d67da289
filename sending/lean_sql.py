"""Lean INSERT, UPDATE and SELECT for the hot paths: recording sends and webhook events.

Recording a send brackets every ESP call with a few writes, and a webhook
call writes its events; through the ORM's query compiler each costs far
more Python time than the database spends on it (bench/send.py,
bench/webhooks.py). These helpers build each statement's SQL once per
model and database, and convert values with per-field functions built
once (_to_db, _from_db) that store and read exactly what the ORM would.
They are for plain rows only: no signals, no ``save()`` overrides, no
multi-table models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache, lru_cache
from itertools import chain
from typing import Any

from django.conf import settings
from django.db import connections, models, router
from django.db.models import Model
from django.utils.dateparse import parse_datetime


@cache
def _insert_fields(model: type[Model]) -> tuple[str, ...]:
    """The attnames of every column an INSERT writes (all but the primary key)."""
    return tuple(field.attname for field in model._meta.concrete_fields if not field.primary_key)


@cache
def _defaults(model: type[Model]) -> tuple[Any, ...]:
    """Per insert field, its default: the callable where the model's is one."""
    return tuple(
        field.default if field.has_default() and callable(field.default) else field.get_default()
        for field in model._meta.concrete_fields
        if not field.primary_key
    )


# Field types whose Python value is already what the database driver takes
# (get_db_prep_save would only return it unchanged, at a cost per value).
_PASS_THROUGH = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
)


def _connection_for(model: type[Model]) -> Any:
    return connections[router.db_for_write(model)]


def insert_rows(
    model: type[Model],
    rows: Sequence[dict[str, Any]],
    *,
    ignore_conflicts: bool = False,
    returning: str | None = None,
) -> list[Any] | None:
    """INSERT rows given as {attname: value} dicts; fields a row leaves out get their default.

    As insert_values() otherwise (values, returning, ignore_conflicts).
    """
    fields = _insert_fields(model)
    defaults = _defaults(model)
    values = [
        tuple(
            row[attname] if attname in row else default() if callable(default) else default
            for attname, default in zip(fields, defaults, strict=True)
        )
        for row in rows
    ]
    return insert_values(
        model, fields, values, ignore_conflicts=ignore_conflicts, returning=returning
    )


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
    """UPDATE model SET values WHERE field = value AND ... [AND field IN (...)]; return rows.

    Values are given as for insert_values().
    """
    connection = _connection_for(model)
    names = (*values, *where)
    (params,) = _adapt_rows(
        [(*values.values(), *where.values())], _to_db(model, names, connection.vendor)
    )
    in_name, in_count = None, 0
    if where_in is not None:
        in_name, in_values = where_in
        in_values = list(in_values)
        in_count = len(in_values)
        (adapt,) = _to_db(model, (in_name,), connection.vendor)
        params += in_values if adapt is None else [adapt(value) for value in in_values]
    sql = _update_sql(model, tuple(values), tuple(where), in_name, in_count)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update_objects(objs: Sequence[Model], field_names: Sequence[str]) -> None:
    """Write field_names of each obj (all of one model) back to its row (see update_many)."""
    if not objs:
        return
    model = type(objs[0])
    attnames = tuple(model._meta.get_field(name).attname for name in field_names)
    rows = [(*(getattr(obj, attname) for attname in attnames), obj.pk) for obj in objs]
    update_values(model, attnames, rows)


def update_many(
    model: type[Model],
    set_names: Sequence[str],
    where_names: Sequence[str],
    rows: Iterable[Sequence[Any]],
) -> None:
    """UPDATE model SET set_names WHERE where_names (equality), once per row of values.

    Each row gives the SET values, then the WHERE values, in order, given
    as for insert_values(); rows should match distinct database rows. On
    SQLite one prepared UPDATE runs for all rows with executemany (a C
    loop); on PostgreSQL one UPDATE ... FROM (VALUES ...) statement takes
    them all, where a statement per row would cost a server round of
    parsing and planning each. Either is far cheaper than a statement per
    row from Python or QuerySet.bulk_update's CASE expressions.
    """
    connection = _connection_for(model)
    names = (*set_names, *where_names)
    params = _adapt_rows(rows, _to_db(model, names, connection.vendor))
    if not params:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(params) > 1:
            for start in range(0, len(params), MAX_ROWS_PER_INSERT):
                chunk = params[start : start + MAX_ROWS_PER_INSERT]
                sql = _update_from_values_sql(
                    model, tuple(set_names), tuple(where_names), len(chunk)
                )
                cursor.execute(sql, list(chain.from_iterable(chunk)))
        else:
            sql = _update_sql(model, tuple(set_names), tuple(where_names), None, 0)
            cursor.executemany(sql, params)


@lru_cache(maxsize=256)
def _update_from_values_sql(
    model: type[Model], set_names: tuple[str, ...], where_names: tuple[str, ...], rows: int
) -> str:
    """PostgreSQL's UPDATE ... FROM (VALUES ...) for rows rows of set_names + where_names.

    Each value is cast to its column's type: a VALUES column whose values
    are all NULL (or all plain text) would otherwise be text.
    """
    connection = _connection_for(model)
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [meta.get_field(name) for name in (*set_names, *where_names)]
    aliases = [f"v{index}" for index in range(len(fields))]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"

    def value(index: int) -> str:
        return f"v.{aliases[index]}::{fields[index].db_type(connection)}"

    table = quote(meta.db_table)
    assignments = ", ".join(
        f"{quote(fields[index].column)} = {value(index)}" for index in range(len(set_names))
    )
    conditions = " AND ".join(
        f"{table}.{quote(fields[index].column)} = {value(index)}"
        for index in range(len(set_names), len(fields))
    )
    return (
        f"UPDATE {table} SET {assignments} "
        f"FROM (VALUES {', '.join([row] * rows)}) AS v ({', '.join(aliases)}) "
        f"WHERE {conditions}"
    )


# ---------------------------------------------------------------------------
# Rows as tuples of chosen fields: values are converted by cheap per-field
# functions built once per model and database (_to_db), instead of each
# field's get_db_prep_save.


class JSONText(str):
    """A JSONField value already serialized, for insert_values() and update_values().

    Lets a caller that had to serialize a value anyway (to check it can be)
    hand the text over instead of having it serialized again.
    """


#: Most rows one INSERT carries (well under SQLite's 32766 and PostgreSQL's
#: 65535 parameters for any model here).
MAX_ROWS_PER_INSERT = 500


def insert_values(
    model: type[Model],
    fields: tuple[str, ...],
    rows: Sequence[Sequence[Any]],
    *,
    ignore_conflicts: bool = False,
    returning: str | None = None,
) -> list[Any] | None:
    """INSERT rows of Python values for fields (attnames), without model instances.

    Every column without a database default must be among fields. Values of
    text, integer, boolean and foreign key fields are passed to the driver
    as they are (str, int, bool or None, not lazy strings); the others are
    converted as their field converts them. With
    returning (a field name), return that column's values for the rows
    actually inserted: with ignore_conflicts, the ones that didn't conflict.
    Long lists are split into statements of MAX_ROWS_PER_INSERT rows.
    """
    if not rows:
        return [] if returning else None
    connection = _connection_for(model)
    adapters = _to_db(model, fields, connection.vendor)
    if returning is None:
        # One single-row statement run for every row: the SQL stays short
        # (drivers rewrite placeholders per statement), and sqlite3 and
        # psycopg loop over the rows in C or a pipeline.
        sql = _insert_values_sql(model, connection.vendor, fields, 1, ignore_conflicts, None)
        with connection.cursor() as cursor:
            cursor.executemany(sql, _adapt_rows(rows, adapters))
        return None
    step = max(1, min(MAX_ROWS_PER_INSERT, 32766 // len(fields)))
    returned: list[Any] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            params = list(chain.from_iterable(_adapt_rows(chunk, adapters)))
            sql = _insert_values_sql(
                model, connection.vendor, fields, len(chunk), ignore_conflicts, returning
            )
            cursor.execute(sql, params)
            if returning is not None:
                returned.extend(value for (value,) in cursor.fetchall())
    return returned if returning is not None else None


def update_values(
    model: type[Model], fields: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> None:
    """UPDATE fields (attnames) of many rows by pk with one executemany (see update_many).

    Each row is the new values of fields, in order, then the row's pk.
    """
    update_many(model, fields, (model._meta.pk.attname,), rows)


def select_values(
    model: type[Model],
    fields: tuple[str, ...],
    *,
    where: dict[str, Any],
    where_in: Sequence[tuple[str, Sequence[Any]]] = (),
    for_update: bool = False,
) -> list[tuple[Any, ...]]:
    """Rows of fields' (attnames) Python values WHERE field = value AND field IN (...).

    In pk order. Values are converted as the ORM converts them (aware
    datetimes, JSON); the values to match are given as for insert_values().
    for_update locks the rows where the database can (PostgreSQL), inside
    a transaction: in pk order, so that transactions locking overlapping
    rows don't deadlock.
    """
    connection = connections[router.db_for_write(model)]
    vendor = connection.vendor
    where_names = tuple(where)
    sql = _select_values_sql(
        model,
        vendor,
        fields,
        where_names,
        tuple((name, len(values)) for name, values in where_in),
        for_update and connection.features.has_select_for_update,
    )
    (params,) = _adapt_rows([tuple(where.values())], _to_db(model, where_names, vendor))
    in_adapters = _to_db(model, tuple(name for name, _ in where_in), vendor)
    for (_, values), adapt in zip(where_in, in_adapters, strict=True):
        params.extend(values if adapt is None else map(adapt, values))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converting = [
        (index, convert)
        for index, convert in enumerate(_from_db(model, fields, vendor))
        if convert is not None
    ]
    if not converting:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for index, convert in converting:
            value = values[index]
            if value is not None:  # SQL NULL is None whatever the field
                values[index] = convert(value)
        converted.append(tuple(values))
    return converted


def _adapt_rows(rows: Iterable[Sequence[Any]], adapters: Sequence[Any]) -> list[list[Any]]:
    """rows (left as they are) as lists of database parameters, by per-column adapters."""
    adapting = [(index, adapt) for index, adapt in enumerate(adapters) if adapt is not None]
    adapted = []
    for row in rows:
        if len(row) != len(adapters):
            raise ValueError(f"Expected {len(adapters)} values, got {len(row)}: {row!r}")
        values = list(row)
        for index, adapt in adapting:
            values[index] = adapt(values[index])
        adapted.append(values)
    return adapted


@lru_cache(maxsize=256)
def _select_values_sql(
    model: type[Model],
    vendor: str,
    fields: tuple[str, ...],
    where: tuple[str, ...],
    where_in: tuple[tuple[str, int], ...],
    for_update: bool,
) -> str:
    connection = _connection_for(model)
    quote = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in fields)
    conditions = [f"{quote(meta.get_field(name).column)} = %s" for name in where]
    conditions += [
        f"{quote(meta.get_field(name).column)} IN ({', '.join(['%s'] * count)})"
        for name, count in where_in
    ]
    sql = (
        f"SELECT {columns} FROM {quote(meta.db_table)} WHERE {' AND '.join(conditions) or '1 = 1'} "
        f"ORDER BY {quote(meta.pk.column)}"
    )
    if for_update:
        sql += " FOR UPDATE"
    return sql


@lru_cache(maxsize=256)
def _insert_values_sql(
    model: type[Model],
    vendor: str,
    fields: tuple[str, ...],
    rows: int,
    ignore_conflicts: bool,
    returning: str | None,
) -> str:
    connection = _connection_for(model)
    quote = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(quote(meta.get_field(name).column) for name in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {', '.join([row] * rows)}"
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    if returning is not None:
        sql += f" RETURNING {quote(meta.get_field(returning).column)}"
    return sql


@cache
def _to_db(model: type[Model], fields: tuple[str, ...], vendor: str) -> tuple:
    """Per field, a function from Python value to database parameter (None: as it is)."""
    connection = _connection_for(model)
    return tuple(_adapter(model._meta.get_field(name), connection) for name in fields)


def _adapter(field: models.Field, connection: Any) -> Callable[[Any], Any] | None:
    alias = connection.alias

    def prep(value: Any) -> Any:
        return field.get_db_prep_save(value, connections[alias])

    if isinstance(field, _PASS_THROUGH) or field.primary_key or field.is_relation:
        return None
    if isinstance(field, models.DateTimeField):
        if connection.vendor == "sqlite" and settings.USE_TZ:
            timezone = connection.timezone
            # Rows often repeat one datetime (a created_at for all, an event's
            # time in several fields): the last one converted is kept.
            last: tuple[Any, Any] = (None, None)

            def naive_text(value: Any) -> Any:
                nonlocal last
                seen, text = last
                if value is seen:
                    return text
                # As DatabaseOperations.adapt_datetimefield_value, for aware values.
                if isinstance(value, datetime) and value.tzinfo is not None:
                    text = str(value.astimezone(timezone).replace(tzinfo=None))
                    last = (value, text)
                    return text
                return prep(value)

            return naive_text
        if connection.vendor == "postgresql":

            def aware(value: Any) -> Any:
                if isinstance(value, datetime) and value.tzinfo is not None:
                    return value
                return prep(value)

            return aware
    if isinstance(field, models.JSONField):
        adapt_json, encoder = connection.ops.adapt_json_value, field.encoder

        def json_value(value: Any) -> Any:
            if type(value) is JSONText:
                # Both SQLite and PostgreSQL take JSON text for a JSON column.
                return value
            # As JSONField.get_db_prep_save: None is SQL NULL.
            if value is None or hasattr(value, "resolve_expression"):
                return prep(value)
            return adapt_json(value, encoder)

        return json_value
    return prep


@cache
def _from_db(model: type[Model], fields: tuple[str, ...], vendor: str) -> tuple:
    """Per field, a function from database value to Python value (None: as it is)."""
    connection = _connection_for(model)
    meta = model._meta
    return tuple(_converter(meta.get_field(name), meta.db_table, connection) for name in fields)


def _converter(field: models.Field, table: str, connection: Any) -> Callable[[Any], Any] | None:
    if (
        isinstance(field, models.DateTimeField)
        and connection.vendor == "sqlite"
        and settings.USE_TZ
    ):
        timezone = connection.timezone

        def aware(value: Any) -> Any:
            # As the SQLite backend's convert_datetimefield_value (sqlite3 has
            # already parsed a column declared "datetime").
            if not isinstance(value, datetime):
                value = parse_datetime(value)
            return value if value.tzinfo is not None else value.replace(tzinfo=timezone)

        return aware
    column = field.get_col(table)
    steps = connection.ops.get_db_converters(column) + field.get_db_converters(connection)
    if not steps:
        return None
    alias = connection.alias

    def convert(value: Any) -> Any:
        for step in steps:
            value = step(value, column, connections[alias])
        return value

    return convert
