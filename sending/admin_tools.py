"""Admin building blocks for mailhub's big tables (messages, recipients, events, calls).

A changelist over millions of rows must never scan the table to draw
itself: no COUNT(*) of the whole table (``show_full_result_count = False``,
and an estimated count on PostgreSQL), no SELECT DISTINCT to list filter
choices (fixed ESP list, a text box for tags), no facet counts, no
date_hierarchy (it lists the dates present). Search is parsed by the admin
(``prefix:value`` or a bare term) so each kind of term uses its own index.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.functional import cached_property

from .selectors import known_esps

# ---------------------------------------------------------------------------
# Counting


class EstimatedCountPaginator(Paginator):
    """Counts from PostgreSQL's planner statistics when there are many rows.

    COUNT(*) reads every matching row: seconds on a table of millions, for a
    number an operator only glances at. Above ``estimate_above`` rows the
    count is the planner's estimate: pg_class.reltuples for a whole table,
    the EXPLAIN row estimate for a filtered query. Other databases count.
    """

    estimate_above = 10_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and connections[queryset.db].vendor == "postgresql":
            estimate = postgres_row_estimate(queryset)
            if estimate is not None and estimate > self.estimate_above:
                self.estimated = True
                return estimate
        return super().count


def postgres_row_estimate(queryset: QuerySet) -> int | None:
    """The PostgreSQL planner's idea of how many rows queryset returns (None: no idea)."""
    connection = connections[queryset.db]
    query = queryset.query
    with connection.cursor() as cursor:
        if not query.where and not query.distinct and not query.combinator:
            cursor.execute(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                [connection.ops.quote_name(queryset.model._meta.db_table)],
            )
            row = cursor.fetchone()
            # reltuples is -1 (or 0) until the table is first analyzed.
            return int(row[0]) if row and row[0] > 0 else None
        sql, params = queryset.order_by().values("pk").query.sql_with_params()
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


# ---------------------------------------------------------------------------
# Filters


class DateRangeFilter(admin.DateFieldListFilter):
    """Presets (today, 7, 30, 90 days) and a from/before date form, on an indexed column.

    Takes ``<field>__gte`` and ``<field>__lt`` as dates (YYYY-MM-DD, in the
    current time zone) or ISO 8601 datetimes; anything else is a clear error.
    """

    template = "admin/mailhub/filters/date_range.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
        tomorrow = today + datetime.timedelta(days=1)
        self.links = (
            ("Any date", {}),
            ("Today", {self.lookup_kwarg_since: today, self.lookup_kwarg_until: tomorrow}),
            *(
                (
                    f"Past {days} days",
                    {
                        self.lookup_kwarg_since: today - datetime.timedelta(days=days - 1),
                        self.lookup_kwarg_until: tomorrow,
                    },
                )
                for days in (7, 30, 90)
            ),
        )

    def expected_parameters(self) -> list[str]:
        return [self.lookup_kwarg_since, self.lookup_kwarg_until]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        bounds = {}
        for lookup in (self.lookup_kwarg_since, self.lookup_kwarg_until):
            if lookup in self.used_parameters:
                bounds[lookup] = self._parse(lookup, self.used_parameters[lookup])
        return queryset.filter(**bounds)

    def _parse(self, lookup: str, raw: Any) -> datetime.datetime:
        text = str(raw[-1] if isinstance(raw, list) else raw).strip()
        label = "from" if lookup == self.lookup_kwarg_since else "before"
        value: datetime.datetime | None = None
        try:
            value = parse_datetime(text)
            if value is None and (day := parse_date(text)) is not None:
                value = datetime.datetime.combine(day, datetime.time())
        except ValueError:
            value = None
        if value is None:
            raise IncorrectLookupParameters(
                ValidationError(
                    f"{self.title} {label}: {text!r} is not a date (YYYY-MM-DD) "
                    "or an ISO 8601 datetime."
                )
            )
        if timezone.is_naive(value):
            value = timezone.make_aware(value)
        return value

    def choices(self, changelist):
        self.hidden_params = [
            (key, value)
            for key, value in changelist.params.items()
            if not key.startswith(self.field_generic)
        ]
        self.since_value = self._date_text(self.lookup_kwarg_since)
        self.until_value = self._date_text(self.lookup_kwarg_until)
        yield from super().choices(changelist)

    def _date_text(self, lookup: str) -> str:
        """The YYYY-MM-DD a date input shows for lookup's value ("" if there's none)."""
        value = self.date_params.get(lookup, "")[:10]
        try:
            return value if value and parse_date(value) else ""
        except ValueError:
            return ""


class TextInputFilter(admin.SimpleListFilter):
    """A filter with a text box (for values with too many choices to list, like tags)."""

    template = "admin/mailhub/filters/text_input.html"

    def lookups(self, request, model_admin):
        # One (unused) choice, so the filter is shown.
        return [("", "")]

    def choices(self, changelist):
        self.hidden_params = [
            (key, value) for key, value in changelist.params.items() if key != self.parameter_name
        ]
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
        }


def tag_filter(apply: Callable[[QuerySet, str], QuerySet]) -> type[TextInputFilter]:
    """A tag text-box filter that filters with apply(queryset, tag)."""

    class TagFilter(TextInputFilter):
        title = "tag"
        parameter_name = "tag"

        def queryset(self, request, queryset):
            value = (self.value() or "").strip()
            return apply(queryset, value) if value else queryset

    return TagFilter


def esp_filter(field: str = "esp") -> type[admin.SimpleListFilter]:
    """ESP choices from the known backends: no SELECT DISTINCT over a huge table."""

    class EspFilter(admin.SimpleListFilter):
        title = "ESP"
        parameter_name = field

        def lookups(self, request, model_admin):
            return [(key, key) for key in known_esps()]

        def queryset(self, request, queryset):
            value = self.value()
            return queryset.filter(**{field: value}) if value else queryset

    return EspFilter


# ---------------------------------------------------------------------------
# ModelAdmin mixins


class LeanChangeList(ChangeList):
    """Loads only the model admin's ``changelist_fields`` (when set) for the list.

    Message rows carry bodies and webhook calls raw payloads: fifty of them
    per page would be megabytes read for nothing.
    """

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        fields = getattr(self.model_admin, "changelist_fields", ())
        return queryset.only(*fields) if fields else queryset


class InvalidChangelistQuery(Exception):
    """A filter or lookup in the changelist's query string can't be applied."""


class BigTableAdminMixin:
    """Changelist settings for tables of millions of rows, search by prefix, and a
    400 page that says which filter is wrong (instead of Django's silent reset)."""

    list_per_page = 50
    list_max_show_all = 500
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    #: prefix -> method name, e.g. {"tag": "search_tag"}: "tag:welcome" calls
    #: self.search_tag(queryset, "welcome").
    search_prefixes: dict[str, str] = {}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        prefix, colon, value = term.partition(":")
        method = self.search_prefixes.get(prefix.strip().lower()) if colon else None
        if method and value.strip():
            return getattr(self, method)(queryset, value.strip()), False
        found = self.search_default(queryset, term)
        if found is None:
            return super().get_search_results(request, queryset, search_term)
        return found, False

    def search_default(self, queryset: QuerySet, term: str) -> QuerySet | None:
        """queryset narrowed to a bare search term; None: Django's search_fields search."""
        return None

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LeanChangeList

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        try:
            return super().get_changelist_instance(request)
        except IncorrectLookupParameters as error:
            raise InvalidChangelistQuery(_describe(error)) from error

    def changelist_view(
        self, request: HttpRequest, extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().changelist_view(request, extra_context)
        except InvalidChangelistQuery as error:
            opts = self.model._meta
            context = {
                **self.admin_site.each_context(request),
                "title": f"Can't show these {opts.verbose_name_plural}",
                "opts": opts,
                "error": str(error),
            }
            return TemplateResponse(
                request, "admin/mailhub/invalid_query.html", context, status=400
            )


def _describe(error: IncorrectLookupParameters) -> str:
    cause = error.args[0] if error.args else error
    if isinstance(cause, ValidationError):
        return " ".join(cause.messages)
    return str(cause) or "The filters in the address can't be applied."


class ReadOnlyAdminMixin:
    """History: viewable, never added, edited or deleted through the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def looks_like_address(term: str) -> bool:
    """Whether a search term is an email address rather than an ESP message id.

    Message ids with an "@" (Mailgun's, the sandbox's) are stored in angle brackets.
    """
    return "@" in term and not any(c.isspace() for c in term) and not term.startswith("<")


def require_perms(request: HttpRequest, *perms: str) -> None:
    """Raise PermissionDenied (403) unless the user has every one of perms."""
    if not request.user.has_perms(perms):
        raise PermissionDenied


def parse_ids(raw: str | list[str]) -> list[int]:
    """Ids from "1,2,3" (or a list of such strings); ValueError names the bad one."""
    values = raw if isinstance(raw, list) else [raw]
    ids = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                raise ValueError(f"{part!r} is not a record id.")
            ids.append(int(part))
    return list(dict.fromkeys(ids))
