"""Query filters for each endpoint. Filtering uses the models' queryset vocabulary.

A malformed value (a bad date, an unknown status) is a 400 naming the filter.
"""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django import forms
from django.db.models import QuerySet
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from sending.models import (
    Message,
    MessageStatus,
    Recipient,
    SendStatus,
    Suppression,
    SuppressionReason,
    SuppressionSource,
)
from sending.signals import EventType
from sending.utils import normalize_address
from tracking.models import Event

from .selectors import messages_for_recipient

MAX_ID = 2**63 - 1


class IdField(forms.IntegerField):
    """A database id: a whole number that fits a 64-bit column (else 400, not a database error)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(min_value=1, max_value=MAX_ID, **kwargs)


@extend_schema_field(OpenApiTypes.INT64)
class IdFilter(filters.NumberFilter):
    field_class = IdField


#: Form classes of ApiFilterSet, by (filterset class, names of the filters used).
_form_classes: dict[tuple[type, tuple[str, ...]], type[forms.Form]] = {}


class ApiFilterSet(filters.FilterSet):
    """A FilterSet that builds only the filters a request uses.

    django-filter deep-copies every filter and makes a new form class for
    each request, which costs more than the query of an indexed lookup. Each
    filter here reads the one query parameter named like it, so the others
    would filter nothing anyway.
    """

    def __init__(self, data: QueryDict | None = None, *args: Any, **kwargs: Any) -> None:
        if data is not None:
            self.base_filters = {
                name: filter_ for name, filter_ in self.base_filters.items() if name in data
            }
        super().__init__(data, *args, **kwargs)

    def get_form_class(self) -> type[forms.Form]:
        key = (type(self), tuple(self.filters))
        if key not in _form_classes:
            _form_classes[key] = super().get_form_class()
        return _form_classes[key]


class MessageFilter(ApiFilterSet):
    id = IdFilter(field_name="id", help_text="The mailhub message id.")
    esp_message_id = filters.CharFilter(
        method="filter_esp_message_id",
        help_text="The ESP's message id: the message's own, or any of its recipients'.",
    )
    recipient = filters.CharFilter(
        method="filter_recipient", help_text="A to/cc/bcc address (case-insensitive)."
    )
    status = filters.ChoiceFilter(choices=MessageStatus.choices)
    esp = filters.CharFilter(help_text='The ESP key, e.g. "mailgun".')
    tag = filters.CharFilter(method="filter_tag", help_text="Messages with this tag.")
    created_after = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", help_text="ISO 8601; inclusive."
    )
    created_before = filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", help_text="ISO 8601; exclusive."
    )
    resend_of = IdFilter(help_text="Resends of this message id.")

    class Meta:
        model = Message
        fields: list[str] = []

    def filter_esp_message_id(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.by_esp_message_id(value)

    def filter_recipient(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return messages_for_recipient(queryset, value)

    def filter_tag(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.with_tag(value)


class RecipientFilter(ApiFilterSet):
    address = filters.CharFilter(method="filter_address", help_text="Case-insensitive.")
    esp_message_id = filters.CharFilter()
    status = filters.ChoiceFilter(choices=EventType.choices, help_text="Latest delivery state.")
    send_status = filters.ChoiceFilter(choices=SendStatus.choices, help_text="Status at send time.")
    esp = filters.CharFilter()
    message = IdFilter(field_name="message_id", help_text="The mailhub message id.")

    class Meta:
        model = Recipient
        fields: list[str] = []

    def filter_address(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.for_address(value)


class EventFilter(ApiFilterSet):
    message_id = filters.CharFilter(help_text="The ESP's message id.")
    message = IdFilter(
        field_name="recipient__message_id", help_text="The mailhub message id (linked events)."
    )
    recipient = filters.CharFilter(method="filter_recipient", help_text="Case-insensitive.")
    event_type = filters.ChoiceFilter(choices=EventType.choices)
    esp = filters.CharFilter()
    timestamp_after = filters.IsoDateTimeFilter(
        field_name="timestamp", lookup_expr="gte", help_text="ISO 8601; inclusive."
    )
    timestamp_before = filters.IsoDateTimeFilter(
        field_name="timestamp", lookup_expr="lt", help_text="ISO 8601; exclusive."
    )

    class Meta:
        model = Event
        fields: list[str] = []

    def filter_recipient(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(recipient_address=normalize_address(value))


class SuppressionFilter(ApiFilterSet):
    address = filters.CharFilter(method="filter_address", help_text="Case-insensitive.")
    esp = filters.CharFilter(help_text="Suppressions scoped to this ESP key.")
    reason = filters.ChoiceFilter(choices=SuppressionReason.choices)
    source = filters.ChoiceFilter(choices=SuppressionSource.choices)
    active = filters.BooleanFilter(method="filter_active", help_text="Not expired.")

    class Meta:
        model = Suppression
        fields: list[str] = []

    def filter_address(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(address=normalize_address(value))

    def filter_active(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        active = queryset.active()
        return active if value else queryset.exclude(pk__in=active.values("pk"))
