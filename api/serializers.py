"""What the API shows: status first (per message, per recipient), then details."""

from __future__ import annotations

from typing import Any

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

RECIPIENT_STATE_FIELDS = [
    "kind",
    "address",
    "display_name",
    "esp",
    "esp_message_id",
    "send_status",
    "status",
    "status_at",
    "delivered_at",
    "bounced_at",
    "first_opened_at",
    "last_opened_at",
    "first_clicked_at",
    "last_clicked_at",
    "open_count",
    "click_count",
    "reject_reason",
]


class MessageRecipientSerializer(serializers.ModelSerializer):
    """A recipient as shown inside its message."""

    class Meta:
        model = Recipient
        fields = ["id", *RECIPIENT_STATE_FIELDS]


class RecipientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipient
        fields = ["id", "message", *RECIPIENT_STATE_FIELDS]


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


def recipient_counts(recipients: list[Recipient]) -> dict[str, int]:
    def count(test: Any) -> int:
        return sum(1 for recipient in recipients if test(recipient))

    return {
        "recipients": len(recipients),
        "accepted": count(lambda r: r.send_status in (SendStatus.SENT, SendStatus.QUEUED)),
        "suppressed": count(lambda r: r.send_status == SendStatus.SUPPRESSED),
        "refused": count(lambda r: r.send_status in (SendStatus.INVALID, SendStatus.REJECTED)),
        "failed": count(lambda r: r.send_status == SendStatus.FAILED),
        "delivered": count(lambda r: r.delivered_at is not None),
        "bounced": count(lambda r: r.bounced_at is not None),
        "complained": count(lambda r: r.status == EventType.COMPLAINED),
        "opened": count(lambda r: r.first_opened_at is not None),
        "clicked": count(lambda r: r.first_clicked_at is not None),
        "opens": sum(recipient.open_count for recipient in recipients),
        "clicks": sum(recipient.click_count for recipient in recipients),
    }


class MessageSerializer(serializers.ModelSerializer):
    counts = serializers.SerializerMethodField()
    recipients = MessageRecipientSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "status",
            "esp",
            "esp_message_id",
            "backend",
            "created_at",
            "updated_at",
            "sent_at",
            "error",
            "attempts",
            "resend_of",
            "from_email",
            "to",
            "cc",
            "bcc",
            "reply_to",
            "subject",
            "tags",
            "metadata",
            "template_id",
            "send_at",
            "content_stored",
            "counts",
            "recipients",
        ]

    @extend_schema_field(MessageCountsSerializer)
    def get_counts(self, message: Message) -> dict[str, int]:
        # recipients are prefetched by the selector: no query here
        return recipient_counts(list(message.recipients.all()))


class AttachmentSerializer(serializers.ModelSerializer):
    stored = serializers.SerializerMethodField(help_text="Whether the content is still kept")

    class Meta:
        model = StoredAttachment
        fields = ["filename", "mimetype", "size", "inline", "content_id", "sha256", "stored"]

    def get_stored(self, attachment: StoredAttachment) -> bool:
        return bool(attachment.file)


class TimelineEventSerializer(serializers.ModelSerializer):
    """An event as shown in its message's timeline."""

    class Meta:
        model = Event
        fields = [
            "id",
            "event_type",
            "timestamp",
            "recipient",
            "recipient_address",
            "reject_reason",
            "description",
            "mta_response",
            "click_url",
            "user_agent",
        ]


class MessageDetailSerializer(MessageSerializer):
    attachments = AttachmentSerializer(many=True, read_only=True)
    events = serializers.SerializerMethodField()

    class Meta(MessageSerializer.Meta):
        fields = [
            *MessageSerializer.Meta.fields,
            "envelope_sender",
            "extra_headers",
            "track_opens",
            "track_clicks",
            "attachments",
            "events",
        ]

    @extend_schema_field(TimelineEventSerializer(many=True))
    def get_events(self, message: Message) -> list[dict]:
        events = selectors.message_events(message=message)
        return TimelineEventSerializer(events, many=True).data


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
