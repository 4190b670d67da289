"""Conditions on JSON fields (tag lists, metadata objects) that work on every database.

PostgreSQL answers JSON containment (``@>``) and JSON path matches (``@?``)
from a GIN (jsonb_path_ops) index, so those are used there; being plain
conditions on the row, several of them OR-ed together become one bitmap
scan. Elsewhere (SQLite) lists are searched with json_each, and objects'
stored JSON text is matched: Django writes it with ``json.dumps``, so a
value appears in it exactly as ``json.dumps`` spells it.
"""

from __future__ import annotations

import json

from django.db import connections
from django.db.models import BooleanField, F, Func, Q, QuerySet, TextField, Value
from django.db.models.expressions import RawSQL
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast


def _is_postgres(queryset: QuerySet) -> bool:
    return connections[queryset.db].vendor == "postgresql"


def json_list_has(queryset: QuerySet, field: str, item: str) -> Q:
    """Rows (of queryset's model) whose JSON list field includes item (e.g. a tag)."""
    if _is_postgres(queryset):
        return Q(**{f"{field}__contains": [item]})
    quote = connections[queryset.db].ops.quote_name
    meta = queryset.model._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    column = quote(meta.get_field(field).column)
    sql = (
        f"SELECT {table}.{pk} FROM {table}, json_each({table}.{column}) WHERE json_each.value = %s"
    )
    return Q(pk__in=RawSQL(sql, (item,)))


def _literals(value: str) -> list[str]:
    """JSON spellings of value: the string, and the number if it reads as one."""
    literals = [json.dumps(value)]
    try:
        number = float(value)
    except ValueError:
        return literals
    if number == number and abs(number) != float("inf"):  # not NaN or infinite
        literals.append(value.strip())
    return literals


def json_dict_has_value(queryset: QuerySet, field: str, value: str, key: str | None = None) -> Q:
    """Rows whose JSON object field has value under key (under any top-level key if None).

    A numeric-looking value also matches the number (metadata values may be
    stored as either).
    """
    literals = _literals(value)
    if _is_postgres(queryset):
        target = "$.*" if key is None else f"$.{json.dumps(key)}"
        condition = " || ".join(f"@ == {literal}" for literal in literals)
        # jsonb @? jsonpath: answered by the GIN index (jsonb_path_exists() is not).
        return Q(
            Func(
                F(field),
                Value(f"{target} ? ({condition})"),
                template="(%(expressions)s::jsonpath)",
                arg_joiner=" @? ",
                output_field=BooleanField(),
            )
        )
    if key is not None:
        # As text, so "7" matches 7 too (KeyTextTransform alone compares as JSON here).
        text = Cast(KeyTextTransform(key, field), output_field=TextField())
        return Q(pk__in=queryset.model._default_manager.alias(v=text).filter(v=value).values("pk"))
    matches = Q(**{f"{field}__icontains": f": {literals[0]}"})
    if len(literals) > 1:
        for end in (",", "}"):
            matches |= Q(**{f"{field}__icontains": f": {literals[1]}{end}"})
    return matches
