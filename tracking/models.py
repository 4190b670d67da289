"""Webhook calls (raw, as received) and the normalized tracking events parsed from them."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from sending.models import Recipient
from sending.signals import EventType, RejectReason


class WebhookKind(models.TextChoices):
    TRACKING = "tracking", "Tracking"
    INBOUND = "inbound", "Inbound"


class WebhookCallStatus(models.TextChoices):
    RECEIVED = "received", "Received, not yet processed"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Failed to process"


class WebhookCallQuerySet(models.QuerySet):
    def failed(self) -> WebhookCallQuerySet:
        return self.filter(status=WebhookCallStatus.FAILED)

    def for_esp(self, esp: str) -> WebhookCallQuerySet:
        return self.filter(esp=esp)


def webhook_body_upload_to(instance: WebhookCall, filename: str) -> str:
    return f"mailhub/webhooks/{instance.body_sha256[:2]}/{instance.body_sha256}"


class WebhookCall(models.Model):
    """One authenticated webhook request, stored raw before it is parsed.

    Reprocessing rebuilds the request from this row, so a parsing bug or an
    outage can be repaired after the fact.
    """

    esp = models.CharField(max_length=50)
    kind = models.CharField(max_length=10, choices=WebhookKind.choices)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    method = models.CharField(max_length=10, default="POST")
    path = models.CharField(max_length=500)
    query_string = models.TextField(blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    headers = models.JSONField(default=dict, help_text="Request headers, credentials redacted")
    body = models.BinaryField(blank=True, default=b"")
    body_file = models.FileField(
        upload_to=webhook_body_upload_to, max_length=255, blank=True, help_text="Large bodies"
    )
    body_size = models.PositiveBigIntegerField(default=0)
    body_sha256 = models.CharField(max_length=64)
    status = models.CharField(
        max_length=10, choices=WebhookCallStatus.choices, default=WebhookCallStatus.RECEIVED
    )
    error = models.TextField(blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    event_count = models.PositiveIntegerField(default=0)

    objects = WebhookCallQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["esp", "kind", "body_sha256"], name="webhookcall_body"),
            models.Index(fields=["status", "-received_at"], name="webhookcall_status"),
        ]
        permissions = [("reprocess_webhookcall", "Can reprocess webhook calls")]

    def __str__(self) -> str:
        return f"{self.esp} {self.kind} call #{self.pk}"

    def get_body(self) -> bytes:
        if self.body_file:
            with self.body_file.open("rb") as file:
                return file.read()
        return bytes(self.body)


class EventQuerySet(models.QuerySet):
    def for_message_id(self, esp: str, message_id: str) -> EventQuerySet:
        return self.filter(esp=esp, message_id=message_id)

    def unlinked(self) -> EventQuerySet:
        return self.filter(recipient__isnull=True)


class Event(models.Model):
    """A normalized tracking event (an AnymailTrackingEvent, stored)."""

    esp = models.CharField(max_length=50)
    event_type = models.CharField(max_length=20, choices=EventType.choices)  # indexed in Meta
    timestamp = models.DateTimeField(null=True, blank=True, db_index=True)
    event_id = models.CharField(max_length=255, blank=True)
    dedupe_key = models.CharField(
        max_length=255, help_text="The ESP's event id, or a hash of the event's content"
    )
    message_id = models.CharField(max_length=255, blank=True)
    recipient_address = models.CharField(max_length=320, blank=True)
    recipient = models.ForeignKey(
        Recipient, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    reject_reason = models.CharField(max_length=20, choices=RejectReason.choices, blank=True)
    description = models.TextField(blank=True)
    mta_response = models.TextField(blank=True)
    user_agent = models.TextField(blank=True)
    click_url = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    esp_event = models.JSONField(null=True, blank=True)
    webhook_call = models.ForeignKey(
        WebhookCall, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    created_at = models.DateTimeField(default=timezone.now)

    objects = EventQuerySet.as_manager()

    class Meta:
        ordering = ["timestamp", "id"]
        constraints = [
            models.UniqueConstraint(fields=["esp", "dedupe_key"], name="event_unique_esp_key")
        ]
        indexes = [
            # Events by ESP message id: alone (the API's events?message_id=, the
            # admin search), with the ESP and address (linking orphans). One
            # index serves all; every index costs each stored event.
            models.Index(
                fields=["message_id", "esp", "recipient_address"], name="event_message_id_esp"
            ),
            models.Index(fields=["recipient_address"], name="event_address"),
            # Not db_index: on PostgreSQL that adds a second (LIKE) index.
            models.Index(fields=["event_type"], name="event_type"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.recipient_address} ({self.esp})"
