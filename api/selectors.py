"""Reads for the API: key lookup, and the rows behind each endpoint.

Status lookups (messages and recipients) fetch plain rows (``.values()``) of
the columns they show, and each fetches what its serializer shows in a fixed
number of queries, whatever the page size: on an indexed lookup, building
model instances costs more than the query.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from django.db import connections
from django.db.models import F, Q, QuerySet

from sending.models import Message, Recipient, StoredAttachment, Suppression
from sending.selectors import resend_backend_paths
from sending.utils import normalize_address
from tracking.models import Event
from tracking.status import STATE_FIELDS

from .models import ApiKey
from .services import KEY_PREFIX, hash_key

#: A row of .values(): column name to value.
Row = dict[str, Any]

#: What status lookups show of each recipient, besides its id (and its message's).
RECIPIENT_STATE_FIELDS = (
    "kind",
    "address",
    "display_name",
    "esp",
    "esp_message_id",
    "send_status",
    *STATE_FIELDS,
)
#: What status lookups show of each message: never bodies, nor per-recipient
#: data that grows with a batch (merge_data, ...).
MESSAGE_FIELDS = (
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
)
#: What a single message's page adds.
MESSAGE_DETAIL_FIELDS = ("envelope_sender", "extra_headers", "track_opens", "track_clicks")
ATTACHMENT_FIELDS = ("filename", "mimetype", "size", "inline", "content_id", "sha256", "file")
TIMELINE_EVENT_FIELDS = (
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
)


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


def message_list() -> QuerySet[Message]:
    """Message rows as status lookups show them (give them recipients with with_recipients)."""
    return Message.objects.values(*MESSAGE_FIELDS)


def message_row(*, message_id: int) -> Row:
    """One message's row as status lookups show it, with its recipients."""
    return with_recipients([message_list().get(pk=message_id)])[0]


def message_detail() -> QuerySet[Message]:
    """Message rows as a message's own page shows them (see with_timeline)."""
    return Message.objects.values(*MESSAGE_FIELDS, *MESSAGE_DETAIL_FIELDS)


def messages_for_recipient(queryset: QuerySet[Message], address: str) -> QuerySet[Message]:
    """queryset's messages to address, newest recorded first: a range scan of one index.

    The index on recipients' (address, message) holds an address's message
    ids in order, so a page of an address that has thousands of messages
    costs what one of an address that has a few does. That needs the order
    and the cursor position to be the recipient row's message id (listed_id
    here) rather than the message's created_at: ids grow in the order
    messages are recorded (as created_at does).
    """
    queryset = (
        queryset.filter(recipients__address=normalize_address(address))
        .annotate(listed_id=F("recipients__message"))
        .order_by("-listed_id")
    )
    # A message to the same address twice (to and bcc) is listed once.
    # DISTINCT ON keeps the index order; elsewhere DISTINCT of the whole row.
    if connections[queryset.db].features.can_distinct_on_fields:
        return queryset.distinct("listed_id")
    return queryset.distinct()


def with_recipients(messages: list[Row]) -> list[Row]:
    """Give each message row its recipients (in the order recorded) as "recipients"; one query."""
    by_message: dict[int, list[Row]] = {message["id"]: [] for message in messages}
    if by_message:
        rows = (
            Recipient.objects.filter(message__in=list(by_message))
            .order_by("id")
            .values("id", "message", *RECIPIENT_STATE_FIELDS)
        )
        for row in rows:
            by_message[row["message"]].append(row)
    for message in messages:
        message["recipients"] = by_message[message["id"]]
    return messages


def with_timeline(message: Row) -> Row:
    """Give a message row its recipients, attachments and event timeline (three queries)."""
    with_recipients([message])
    message["attachments"] = list(
        StoredAttachment.objects.filter(message=message["id"])
        .order_by("position")
        .values(*ATTACHMENT_FIELDS)
    )
    message["events"] = list(
        message_events(esp=message["esp"], recipients=message["recipients"]).values(
            *TIMELINE_EVENT_FIELDS
        )
    )
    return message


def message_events(*, esp: str, recipients: Iterable[Row]) -> QuerySet[Event]:
    """A message's event timeline: events linked to its recipients, and any not linked yet."""
    recipients = list(recipients)
    unlinked = Q(pk__in=[])
    esp_message_ids = {r["esp_message_id"] for r in recipients if r["esp_message_id"]}
    if esp_message_ids:
        unlinked = Q(esp=esp, message_id__in=esp_message_ids, recipient__isnull=True)
    return Event.objects.filter(Q(recipient__in=[r["id"] for r in recipients]) | unlinked).order_by(
        "timestamp", "id"
    )


def recipient_list() -> QuerySet[Recipient]:
    """Recipient rows as status lookups show them, each with its message's id."""
    return Recipient.objects.values("id", "message", *RECIPIENT_STATE_FIELDS)


def event_list() -> QuerySet[Event]:
    """Events, each with its mailhub message's id as message_pk (None while unlinked)."""
    return Event.objects.annotate(message_pk=F("recipient__message_id"))


def suppression_list() -> QuerySet[Suppression]:
    return Suppression.objects.all()


def resend_backends(*, message: Message) -> list[str]:
    """Backends message may be resent through: its own, the sandbox, and RESEND_BACKENDS."""
    return list(dict.fromkeys([message.backend, *resend_backend_paths()]))
