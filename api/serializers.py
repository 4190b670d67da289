"""What the API shows: status first (per message, per recipient), then details."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, tzinfo
from functools import cached_property
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from sending.models import (
    Message,
    Recipient,
    SendStatus,
    StoredAttachment,
    Suppression,
    SuppressionReason,
)
from sending.signals import EventType
from tracking.models import Event

from . import selectors
from .selectors import Row


def row_data(row: Row, fields: Iterable[str], zone: tzinfo) -> dict[str, Any]:
    """fields of a .values() row, shown as ModelSerializer fields would show them.

    Datetimes as DRF's DateTimeField shows them: ISO 8601 in zone (the
    current time zone), UTC as "Z". Every other column's value is already
    what the JSON shows (text, numbers, booleans, None, decoded JSON, a
    foreign key's id).
    """
    data = {}
    for name in fields:
        value = row[name]
        if isinstance(value, datetime):
            value = value.astimezone(zone).isoformat()
            if value.endswith("+00:00"):
                value = value[:-6] + "Z"
        data[name] = value
    return data


# Serializers of status lookups show rows from the selectors (.values()), not
# model instances. Their declared fields describe what is shown (they make the
# OpenAPI schema), but to_representation builds it from the row directly: on
# an indexed lookup, DRF's per-field machinery costs more than the query.
# tests/test_api.py checks that both show the same. (No docstrings on these
# classes: drf-spectacular would publish them in the schema.)


class RowSerializer(serializers.ModelSerializer):
    def to_representation(self, row: Row) -> dict[str, Any]:
        return self.row_data(row, self.Meta.fields)

    def row_data(self, row: Row, fields: Iterable[str]) -> dict[str, Any]:
        return row_data(row, fields, self.time_zone)

    @cached_property
    def time_zone(self) -> tzinfo:
        # Looked up once for all the rows of a list: it is a context-local lookup.
        return timezone.get_current_timezone()


class MessageRecipientSerializer(RowSerializer):
    """A recipient as shown inside its message."""

    class Meta:
        model = Recipient
        fields = ["id", *selectors.RECIPIENT_STATE_FIELDS]


class RecipientSerializer(RowSerializer):
    class Meta:
        model = Recipient
        fields = ["id", "message", *selectors.RECIPIENT_STATE_FIELDS]


class MessageCountsSerializer(serializers.Serializer):
    """How a message's recipients fared (from the send call, then from tracking events)."""

    recipients = serializers.IntegerField()
    accepted = serializers.IntegerField(help_text="Taken by the ESP (sent or queued)")
    suppressed = serializers.IntegerField()
    refused = serializers.IntegerField(help_text="Invalid or rejected at send time")
    failed = serializers.IntegerField()
    delivered = serializers.IntegerField()
    bounced = serializers.IntegerField()
    complained = serializers.IntegerField()
    opened = serializers.IntegerField(help_text="Recipients who opened")
    clicked = serializers.IntegerField(help_text="Recipients who clicked")
    opens = serializers.IntegerField(help_text="Opens, all recipients")
    clicks = serializers.IntegerField(help_text="Clicks, all recipients")


def recipient_counts(recipients: list[Row]) -> dict[str, int]:
    def count(test: Any) -> int:
        return sum(1 for recipient in recipients if test(recipient))

    return {
        "recipients": len(recipients),
        "accepted": count(lambda r: r["send_status"] in (SendStatus.SENT, SendStatus.QUEUED)),
        "suppressed": count(lambda r: r["send_status"] == SendStatus.SUPPRESSED),
        "refused": count(lambda r: r["send_status"] in (SendStatus.INVALID, SendStatus.REJECTED)),
        "failed": count(lambda r: r["send_status"] == SendStatus.FAILED),
        "delivered": count(lambda r: r["delivered_at"] is not None),
        "bounced": count(lambda r: r["bounced_at"] is not None),
        "complained": count(lambda r: r["status"] == EventType.COMPLAINED),
        "opened": count(lambda r: r["first_opened_at"] is not None),
        "clicked": count(lambda r: r["first_clicked_at"] is not None),
        "opens": sum(recipient["open_count"] for recipient in recipients),
        "clicks": sum(recipient["click_count"] for recipient in recipients),
    }


class MessageSerializer(RowSerializer):
    # Shows a row given its recipients by selectors.with_recipients.
    counts = serializers.SerializerMethodField()
    recipients = MessageRecipientSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [*selectors.MESSAGE_FIELDS, "counts", "recipients"]

    def to_representation(self, message: Row) -> dict[str, Any]:
        data = self.row_data(message, selectors.MESSAGE_FIELDS)
        data["counts"] = self.get_counts(message)
        fields = MessageRecipientSerializer.Meta.fields
        data["recipients"] = [self.row_data(row, fields) for row in message["recipients"]]
        return data

    @extend_schema_field(MessageCountsSerializer)
    def get_counts(self, message: Row) -> dict[str, int]:
        return recipient_counts(message["recipients"])


class AttachmentSerializer(RowSerializer):
    stored = serializers.SerializerMethodField(help_text="Whether the content is still kept")

    class Meta:
        model = StoredAttachment
        fields = ["filename", "mimetype", "size", "inline", "content_id", "sha256", "stored"]

    def to_representation(self, attachment: Row) -> dict[str, Any]:
        data = self.row_data(attachment, self.Meta.fields[:-1])
        data["stored"] = self.get_stored(attachment)
        return data

    def get_stored(self, attachment: Row) -> bool:
        return bool(attachment["file"])


class TimelineEventSerializer(RowSerializer):
    """An event as shown in its message's timeline."""

    class Meta:
        model = Event
        fields = list(selectors.TIMELINE_EVENT_FIELDS)


class MessageDetailSerializer(MessageSerializer):
    # Shows a row given its recipients, attachments and events by selectors.with_timeline.
    attachments = AttachmentSerializer(many=True, read_only=True)
    events = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [
            *MessageSerializer.Meta.fields,
            *selectors.MESSAGE_DETAIL_FIELDS,
            "attachments",
            "events",
        ]

    def to_representation(self, message: Row) -> dict[str, Any]:
        data = super().to_representation(message)
        data.update(self.row_data(message, selectors.MESSAGE_DETAIL_FIELDS))
        attachment = AttachmentSerializer()
        data["attachments"] = [attachment.to_representation(row) for row in message["attachments"]]
        data["events"] = self.get_events(message)
        return data

    @extend_schema_field(TimelineEventSerializer(many=True))
    def get_events(self, message: Row) -> list[dict[str, Any]]:
        fields = TimelineEventSerializer.Meta.fields
        return [self.row_data(event, fields) for event in message["events"]]


class EventSerializer(serializers.ModelSerializer):
    message = serializers.IntegerField(
        source="message_pk",
        read_only=True,
        allow_null=True,
        help_text="The mailhub message id (null until the event is linked)",
    )

    class Meta:
        model = Event
        fields = [
            "id",
            "esp",
            "event_type",
            "timestamp",
            "event_id",
            "message_id",
            "recipient_address",
            "recipient",
            "message",
            "reject_reason",
            "description",
            "mta_response",
            "user_agent",
            "click_url",
            "tags",
            "metadata",
            "created_at",
        ]


class EventDetailSerializer(EventSerializer):
    class Meta(EventSerializer.Meta):
        fields = [*EventSerializer.Meta.fields, "esp_event", "webhook_call"]


class SuppressionSerializer(serializers.ModelSerializer):
    active = serializers.BooleanField(source="is_active", read_only=True)

    class Meta:
        model = Suppression
        fields = [
            "id",
            "address",
            "esp",
            "reason",
            "source",
            "created_at",
            "expires_at",
            "active",
            "note",
        ]
        read_only_fields = ["source", "created_at"]


class SuppressionCreateSerializer(serializers.Serializer):
    """Suppress an address (for every ESP, or one); an existing suppression is updated."""

    address = serializers.EmailField(max_length=320)
    reason = serializers.ChoiceField(
        choices=SuppressionReason.choices, default=SuppressionReason.MANUAL
    )
    esp = serializers.CharField(
        max_length=50, allow_blank=True, default="", help_text="Blank: every ESP"
    )
    expires_at = serializers.DateTimeField(allow_null=True, default=None)
    note = serializers.CharField(allow_blank=True, default="", max_length=2000)


class ResendSerializer(serializers.Serializer):
    backend = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=(
            "Dotted path of the backend to send through: the message's own (the default), "
            'the sandbox, or one listed in MAILHUB["RESEND_BACKENDS"].'
        ),
    )

    def validate_backend(self, value: str) -> str:
        message = self.context["message"]
        allowed = selectors.resend_backends(message=message)
        if value and value not in allowed:
            raise serializers.ValidationError(
                f"Not a backend this message can be resent through; one of: {', '.join(allowed)}"
            )
        return value or message.backend


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ResendErrorSerializer(ErrorSerializer):
    message = MessageSerializer(required=False, help_text="The new record, when one was made")
