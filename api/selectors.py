"""Reads for the API: key lookup, and the querysets behind each endpoint.

Each queryset fetches what its serializer shows in a fixed number of queries
(select_related / prefetch_related), whatever the page size.
"""

from __future__ import annotations

import hmac

from django.db.models import F, Prefetch, Q, QuerySet

from sending.models import Message, Recipient, Suppression
from sending.selectors import resend_backend_paths
from tracking.models import Event

from .models import ApiKey
from .services import KEY_PREFIX, hash_key


def api_key_get(*, raw_key: str) -> ApiKey | None:
    """The key whose text is raw_key (revoked or not), or None."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 8:
        return None
    try:
        api_key = ApiKey.objects.get(prefix=parts[1])
    except ApiKey.DoesNotExist:
        return None
    if not hmac.compare_digest(api_key.hashed_key, hash_key(raw_key)):
        return None
    return api_key


#: What status lookups never show: bodies, and per-recipient data that grows with a batch.
MESSAGE_CONTENT_FIELDS = (
    "body",
    "alternatives",
    "merge_data",
    "merge_global_data",
    "merge_metadata",
    "merge_headers",
    "esp_extra",
)


def message_list() -> QuerySet[Message]:
    return Message.objects.defer(*MESSAGE_CONTENT_FIELDS).prefetch_related(
        Prefetch("recipients", queryset=Recipient.objects.order_by("id"))
    )


def message_detail() -> QuerySet[Message]:
    return message_list().prefetch_related("attachments")


def message_events(*, message: Message) -> QuerySet[Event]:
    """A message's event timeline: events linked to its recipients, and any not linked yet."""
    recipients = list(message.recipients.all())
    unlinked = Q(pk__in=[])
    esp_message_ids = {r.esp_message_id for r in recipients if r.esp_message_id}
    if esp_message_ids:
        unlinked = Q(esp=message.esp, message_id__in=esp_message_ids, recipient__isnull=True)
    return Event.objects.filter(Q(recipient__in=[r.pk for r in recipients]) | unlinked).order_by(
        "timestamp", "id"
    )


def recipient_list() -> QuerySet[Recipient]:
    return Recipient.objects.all()


def event_list() -> QuerySet[Event]:
    """Events, each with its mailhub message's id as message_pk (None while unlinked)."""
    return Event.objects.annotate(message_pk=F("recipient__message_id"))


def suppression_list() -> QuerySet[Suppression]:
    return Suppression.objects.all()


def resend_backends(*, message: Message) -> list[str]:
    """Backends message may be resent through: its own, the sandbox, and RESEND_BACKENDS."""
    return list(dict.fromkeys([message.backend, *resend_backend_paths()]))
