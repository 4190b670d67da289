"""The record of every send: Message, Recipient, StoredAttachment, Suppression.

Models hold data and the query vocabulary (queryset methods); writes live in
``sending.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connections, models
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from .signals import EventType, RejectReason


class MessageStatus(models.TextChoices):
    """Where a message is in mailhub's send pipeline (the aggregate status)."""

    QUEUED = "queued", "Queued in mailhub"
    SENDING = "sending", "Sending"
    SENT = "sent", "Accepted by the ESP"
    REJECTED = "rejected", "Refused by the ESP"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Not sent: all recipients suppressed"
    UNKNOWN = "unknown", "Unknown"


class SendStatus(models.TextChoices):
    """A recipient's status from the send call (``AnymailRecipientStatus.status``)."""

    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    QUEUED = "queued", "Queued"
    INVALID = "invalid", "Invalid"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    UNKNOWN = "unknown", "Unknown"
    SUPPRESSED = "suppressed", "Suppressed"


class RecipientKind(models.TextChoices):
    TO = "to", "To"
    CC = "cc", "Cc"
    BCC = "bcc", "Bcc"


class MessageQuerySet(models.QuerySet):
    def for_esp(self, esp: str) -> MessageQuerySet:
        return self.filter(esp=esp)

    def failed(self) -> MessageQuerySet:
        return self.filter(status=MessageStatus.FAILED)

    def stuck_sending(self, before) -> MessageQuerySet:
        """Messages left in "sending" since before (a worker or process died mid-send)."""
        return self.filter(status=MessageStatus.SENDING, updated_at__lt=before)

    def queued_due(self, before) -> MessageQuerySet:
        """Queued messages whose next attempt was due before `before` but hasn't started."""
        return self.filter(status=MessageStatus.QUEUED, next_attempt_at__lte=before)

    def by_esp_message_id(self, esp_message_id: str) -> MessageQuerySet:
        """Messages with this ESP message id, on the message or on any of its recipients."""
        # A UNION of two indexed lookups: an OR across the join (or with an
        # IN subquery) makes PostgreSQL scan every message.
        ids = (
            Message.objects.filter(esp_message_id=esp_message_id)
            .order_by()
            .values("pk")
            .union(
                Recipient.objects.filter(esp_message_id=esp_message_id)
                .order_by()
                .values("message_id"),
                all=True,
            )
        )
        return self.filter(pk__in=ids)

    def for_recipient(self, address: str) -> MessageQuerySet:
        """Messages with address among their to/cc/bcc recipients."""
        return self.filter(
            pk__in=Recipient.objects.for_address(address).order_by().values("message_id")
        )

    def with_tag(self, tag: str) -> MessageQuerySet:
        """Messages whose tags include tag."""
        connection = connections[self.db]
        if connection.features.supports_json_field_contains:
            return self.filter(tags__contains=[tag])
        # SQLite has no JSON containment operator: look through json_each.
        quote = connection.ops.quote_name
        table = quote(Message._meta.db_table)
        sql = (
            f"SELECT {table}.{quote('id')} FROM {table}, json_each({table}.{quote('tags')}) "
            "WHERE json_each.value = %s"
        )
        return self.filter(pk__in=RawSQL(sql, [tag]))


class Message(models.Model):
    """One message handed to a mailhub backend (a batch send is one Message)."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When the ESP accepted it")

    backend = models.CharField(max_length=200, help_text="Dotted path of the backend class")
    # esp and status are indexed together with created_at (Meta.indexes), which
    # serves equality lookups on either alone too; every index costs each send.
    esp = models.CharField(max_length=50, help_text='ESP key, e.g. "mailgun"')
    esp_message_id = models.CharField(max_length=255, blank=True)  # indexed in Meta
    status = models.CharField(
        max_length=20, choices=MessageStatus.choices, default=MessageStatus.SENDING
    )
    error = models.TextField(blank=True, help_text="The last attempt's error")
    attempts = models.PositiveIntegerField(default=0, help_text="ESP calls made so far")
    # Queued sending (sending.backends.queued)
    queue_backend = models.CharField(
        max_length=200,
        blank=True,
        help_text="Dotted path of the backend a queued message is sent through by the worker "
        "(backend and esp then show the one that sent it)",
    )
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="When a queued message is due to be (re)tried"
    )
    idempotency_key = models.CharField(
        max_length=100,
        blank=True,
        help_text="Sent with every attempt to ESPs that accept one, so a retry can't send twice",
    )
    # Both are set on few rows: partial indexes (Meta.indexes) skip the rest.
    resend_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resends",
        db_index=False,
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who asked for this send (a resend from the admin, API or a command)",
    )

    # The email, as sent (send defaults merged in)
    from_email = models.CharField(max_length=320, blank=True)
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.JSONField(default=list, blank=True)
    subject = models.TextField(blank=True, null=True)
    body = models.TextField(blank=True)
    content_subtype = models.CharField(max_length=20, default="plain")
    alternatives = models.JSONField(
        default=list, blank=True, help_text="[[content, mimetype], ...]"
    )
    extra_headers = models.JSONField(default=dict, blank=True)
    content_stored = models.BooleanField(
        default=True, help_text="False when bodies and attachments were not kept (privacy)"
    )

    # Anymail attributes (null: not set)
    envelope_sender = models.CharField(max_length=320, blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    merge_metadata = models.JSONField(null=True, blank=True)
    merge_headers = models.JSONField(null=True, blank=True)
    merge_data = models.JSONField(null=True, blank=True)
    merge_global_data = models.JSONField(null=True, blank=True)
    template_id = models.CharField(max_length=255, blank=True)
    esp_extra = models.JSONField(null=True, blank=True)
    track_opens = models.BooleanField(null=True, blank=True)
    track_clicks = models.BooleanField(null=True, blank=True)
    send_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["esp", "-created_at"], name="message_esp_created"),
            models.Index(fields=["status", "-created_at"], name="message_status_created"),
            # Text columns matched exactly are indexed here, not with db_index,
            # which on PostgreSQL adds a second (LIKE) index to every write.
            models.Index(fields=["esp_message_id"], name="message_esp_message_id"),
            models.Index(
                fields=["resend_of"],
                name="message_resend_of",
                condition=models.Q(resend_of__isnull=False),
            ),
            models.Index(
                fields=["requested_by"],
                name="message_requested_by",
                condition=models.Q(requested_by__isnull=False),
            ),
        ]
        permissions = [("resend_message", "Can resend messages")]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} [{self.esp} #{self.pk}]"

    @property
    def html_body(self) -> str | None:
        """The HTML version of the message, if it has one."""
        if self.content_subtype == "html":
            return self.body
        for content, mimetype in self.alternatives or []:
            if mimetype == "text/html":
                return content
        return None


class RecipientQuerySet(models.QuerySet):
    def for_address(self, address: str) -> RecipientQuerySet:
        from .utils import normalize_address

        return self.filter(address=normalize_address(address))

    def bounced(self) -> RecipientQuerySet:
        return self.filter(status=EventType.BOUNCED)

    def delivered(self) -> RecipientQuerySet:
        return self.filter(status=EventType.DELIVERED)


class Recipient(models.Model):
    """One to/cc/bcc recipient of a Message: send status, then delivery state."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="recipients")
    kind = models.CharField(max_length=3, choices=RecipientKind.choices, default=RecipientKind.TO)
    address = models.CharField(max_length=320, help_text="Normalized (lowercase) addr-spec")
    display_name = models.CharField(max_length=320, blank=True)
    esp = models.CharField(max_length=50)
    esp_message_id = models.CharField(max_length=255, blank=True)
    send_status = models.CharField(
        max_length=20, choices=SendStatus.choices, default=SendStatus.PENDING
    )

    # Delivery state, advanced by tracking events
    status = models.CharField(
        max_length=20, choices=EventType.choices, blank=True, help_text="Latest delivery state"
    )
    status_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    first_opened_at = models.DateTimeField(null=True, blank=True)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    first_clicked_at = models.DateTimeField(null=True, blank=True)
    last_clicked_at = models.DateTimeField(null=True, blank=True)
    open_count = models.PositiveIntegerField(default=0)
    click_count = models.PositiveIntegerField(default=0)
    reject_reason = models.CharField(max_length=20, choices=RejectReason.choices, blank=True)

    objects = RecipientQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["esp", "esp_message_id", "address"], name="recipient_esp_msgid"),
            # Status lookups by ESP message id alone (the API, the admin search).
            models.Index(fields=["esp_message_id"], name="recipient_esp_message_id"),
            # Lookups by address, and an address's messages newest first a page
            # at a time (the API's messages?recipient=): a range scan, however many.
            models.Index(fields=["address", "message"], name="recipient_address_message"),
        ]
        permissions = [("forget_recipient", "Can forget an address (erasure requests)")]

    def __str__(self) -> str:
        return self.address


def attachment_upload_to(instance: StoredAttachment, filename: str) -> str:
    # Content-addressed: the same bytes are stored once, whatever the filename.
    return f"mailhub/attachments/{instance.sha256[:2]}/{instance.sha256}"


class StoredAttachment(models.Model):
    """An attachment of a sent Message; bytes in Django storage by content hash."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveSmallIntegerField(default=0)
    filename = models.CharField(max_length=255, blank=True)
    mimetype = models.CharField(max_length=255)
    inline = models.BooleanField(default=False)
    content_id = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to=attachment_upload_to, max_length=255, blank=True)

    class Meta:
        ordering = ["message", "position"]

    def __str__(self) -> str:
        return self.filename or f"attachment {self.position + 1}"


class SuppressionReason(models.TextChoices):
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    INVALID = "invalid", "Invalid"
    MANUAL = "manual", "Manual"


class SuppressionSource(models.TextChoices):
    EVENT = "event", "Tracking event"
    MANUAL = "manual", "Added by hand"
    IMPORT = "import", "Imported"


class SuppressionQuerySet(models.QuerySet):
    def active(self, now=None) -> SuppressionQuerySet:
        now = now or timezone.now()
        return self.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    def applying_to(self, esp: str) -> SuppressionQuerySet:
        """Suppressions for all ESPs, plus those scoped to esp."""
        return self.filter(esp__in=("", esp))


class Suppression(models.Model):
    """An address that must not be mailed (by any ESP, or by one)."""

    address = models.CharField(max_length=320, help_text="Normalized (lowercase) addr-spec")
    esp = models.CharField(
        max_length=50, blank=True, default="", help_text="Blank: applies to every ESP"
    )
    reason = models.CharField(max_length=20, choices=SuppressionReason.choices)
    source = models.CharField(
        max_length=20, choices=SuppressionSource.choices, default=SuppressionSource.MANUAL
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = SuppressionQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["address", "esp"], name="suppression_unique_address_esp"
            )
        ]

    def __str__(self) -> str:
        scope = self.esp or "all ESPs"
        return f"{self.address} ({self.get_reason_display()}, {scope})"

    @property
    def is_active(self) -> bool:
        return self.expires_at is None or self.expires_at > timezone.now()
