"""Received mail: InboundMessage and its attachments, raw MIME and bytes in storage."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from sending.models import Message
from tracking.models import WebhookCall


class InboundMessageQuerySet(models.QuerySet):
    def for_esp(self, esp: str) -> InboundMessageQuerySet:
        return self.filter(esp=esp)

    def with_parse_errors(self) -> InboundMessageQuerySet:
        return self.exclude(parse_error="")


class InboundMessage(models.Model):
    """One received email, as the ESP delivered it."""

    esp = models.CharField(max_length=50)
    webhook_call = models.ForeignKey(
        WebhookCall,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbound_messages",
    )
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    event_id = models.CharField(max_length=255, blank=True)
    envelope_sender = models.CharField(max_length=320, blank=True)
    envelope_recipient = models.CharField(max_length=320, blank=True)  # indexed in Meta
    from_email = models.CharField(max_length=998, blank=True)
    from_address = models.CharField(max_length=320, blank=True)  # indexed in Meta
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    subject = models.TextField(blank=True)
    date = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=998, blank=True, help_text="The Message-ID header")
    in_reply_to = models.TextField(blank=True)
    references = models.TextField(blank=True)
    headers = models.JSONField(default=list, blank=True, help_text="[[name, value], ...]")
    text = models.TextField(blank=True)
    html = models.TextField(blank=True, help_text="As received; only ever shown sandboxed")
    stripped_text = models.TextField(blank=True)
    stripped_html = models.TextField(blank=True)
    spam_detected = models.BooleanField(null=True, blank=True)
    spam_score = models.FloatField(null=True, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    raw_sha256 = models.CharField(max_length=64)
    raw_file = models.FileField(max_length=255, blank=True)
    parse_error = models.TextField(blank=True, help_text="Defects found while parsing")
    reply_to_message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )

    objects = InboundMessageQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["esp", "raw_sha256"], name="inbound_unique_esp_raw")
        ]
        # Addresses are matched exactly: plain indexes (db_index would add a
        # second, LIKE, index on PostgreSQL).
        indexes = [
            models.Index(fields=["envelope_recipient"], name="inbound_envelope_recipient"),
            models.Index(fields=["from_address"], name="inbound_from_address"),
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} from {self.from_address or '?'}"


class InboundAttachment(models.Model):
    """One attachment (or inline part) of an InboundMessage; bytes by content hash."""

    message = models.ForeignKey(
        InboundMessage, on_delete=models.CASCADE, related_name="attachments"
    )
    position = models.PositiveSmallIntegerField(default=0)
    filename = models.CharField(max_length=255, help_text="Sanitized: safe to show, never a path")
    declared_filename = models.TextField(blank=True, help_text="As the sender gave it (untrusted)")
    declared_content_type = models.CharField(max_length=255, blank=True, help_text="Untrusted")
    inline = models.BooleanField(default=False)
    content_id = models.CharField(max_length=998, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    file = models.FileField(max_length=255, blank=True)

    class Meta:
        ordering = ["message", "position"]

    def __str__(self) -> str:
        return self.filename
