"""Writes for the tracking app: raw webhook calls, events, recipient state, suppressions.

The base webhook view is the only caller of the ``webhook_call_*`` and
``events_record`` functions, so every ESP is recorded the same way.
Recording one webhook call is one transaction with set-based writes: one
SELECT for the recipients involved (locked), one for already-known events,
one INSERT for the new events, one UPDATE for the recipients that changed,
and one INSERT for new suppressions.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections, router, transaction
from django.db.models import Q
from django.utils import timezone

from sending import lean_sql
from sending.models import Message, Recipient, Suppression, SuppressionReason, SuppressionSource
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import (
    delete_unreferenced_files,
    get_mailhub_setting,
    normalize_address,
    pk_batches,
)

from .models import Event, WebhookCall, WebhookCallStatus
from .status import apply_events

# Bodies up to this size are kept in the row; larger ones go to storage.
INLINE_BODY_LIMIT = 256 * 1024

# Bounces that mean the address will never accept mail. Blocks, spam
# filtering and time-outs are often temporary, so they don't suppress.
HARD_BOUNCE_REASONS = frozenset({RejectReason.BOUNCED, RejectReason.INVALID, None, ""})


# ---------------------------------------------------------------------------
# Raw webhook calls


def webhook_call_store(
    *,
    esp: str,
    kind: str,
    method: str,
    path: str,
    query_string: str,
    content_type: str,
    headers: dict[str, str],
    body: bytes,
) -> tuple[WebhookCall, bool]:
    """Store a webhook request raw; return (call, already_processed).

    An identical body already processed for the same ESP and kind is an ESP
    retry of a delivery we handled: nothing new is stored.
    """
    sha256 = hashlib.sha256(body).hexdigest()
    existing_ids = lean_sql.select_column(
        WebhookCall,
        "id",
        where={"esp": esp, "kind": kind, "body_sha256": sha256},
        order_by_pk_desc=True,
        limit=1,
    )
    if existing_ids:
        existing = WebhookCall.objects.get(pk=existing_ids[0])
        return existing, existing.status == WebhookCallStatus.PROCESSED

    call = WebhookCall(
        esp=esp,
        kind=kind,
        method=method,
        path=path[:500],
        query_string=query_string,
        content_type=content_type[:255],
        headers=headers,
        body_size=len(body),
        body_sha256=sha256,
    )
    if len(body) <= INLINE_BODY_LIMIT:
        call.body = body
    else:
        call.body_file.save(sha256, ContentFile(body), save=False)
    lean_sql.insert([call], returning_pk=True)
    return call, False


def webhook_call_mark_processed(*, call: WebhookCall, event_count: int) -> None:
    now = timezone.now()
    lean_sql.update(
        WebhookCall,
        {
            "status": WebhookCallStatus.PROCESSED,
            "error": "",
            "processed_at": now,
            "event_count": event_count,
            "attempts": call.attempts + 1,
        },
        where={"id": call.pk},
    )
    call.status, call.processed_at, call.event_count = WebhookCallStatus.PROCESSED, now, event_count
    call.attempts += 1


def webhook_call_mark_failed(*, call: WebhookCall, error: str) -> None:
    WebhookCall.objects.filter(pk=call.pk).update(
        status=WebhookCallStatus.FAILED, error=error, attempts=call.attempts + 1
    )
    call.status, call.error = WebhookCallStatus.FAILED, error
    call.attempts += 1


# ---------------------------------------------------------------------------
# Events


def event_dedupe_key(event: AnymailTrackingEvent) -> str:
    """The ESP's event id, or a hash of what makes the event distinct."""
    if event.event_id:
        event_id = str(event.event_id)
        if len(event_id) <= 200:
            return f"id:{event_id}"
        return "id-sha256:" + hashlib.sha256(event_id.encode()).hexdigest()
    content = json.dumps(
        [
            event.event_type,
            event.timestamp.isoformat() if event.timestamp else None,
            event.message_id,
            event.recipient,
            event.click_url,
            event.description,
            json_safe(event.esp_event),
        ],
        sort_keys=True,
        default=str,
    )
    return "sha256:" + hashlib.sha256(content.encode()).hexdigest()


def events_record(
    *, esp: str, events: Sequence[AnymailTrackingEvent], webhook_call: WebhookCall | None = None
) -> list[AnymailTrackingEvent]:
    """Store events (skipping ones already stored) and apply them; return the new ones.

    Each new event is linked to its Recipient by (ESP, message id, address)
    when the message is known, advancing that recipient's state; otherwise
    it is kept unlinked until the message is recorded.
    """
    if not events:
        return []
    by_key: dict[str, AnymailTrackingEvent] = {}
    for event in events:
        by_key.setdefault(event_dedupe_key(event), event)

    with transaction.atomic():
        recipients = _lock_recipients(
            esp,
            {
                (e.message_id, normalize_address(e.recipient))
                for e in by_key.values()
                if e.message_id and e.recipient
            },
        )
        rows = []
        for key, event in by_key.items():
            address = normalize_address(event.recipient) if event.recipient else ""
            recipient = recipients.get((event.message_id, address))
            rows.append(_event_row(esp, key, event, address, recipient, webhook_call))
        # An event already stored (a duplicate delivery, or a concurrent call
        # that got here first) conflicts and is skipped: only the keys that
        # come back are new, and only new events advance state.
        inserted = set(
            lean_sql.insert_rows(Event, rows, ignore_conflicts=True, returning="dedupe_key")
        )
        new = [(row, by_key[row["dedupe_key"]]) for row in rows if row["dedupe_key"] in inserted]
        applied: dict[int, list[AnymailTrackingEvent]] = defaultdict(list)
        for row, event in new:
            if row["recipient_id"] is not None:
                applied[row["recipient_id"]].append(event)
        _advance(recipients, applied)
        _suppress_from_events(esp, [event for _, event in new])
    return [event for _, event in new]


def events_link_orphans(*, esp: str, message_ids: Iterable[str]) -> int:
    """Link stored events that arrived before their message was recorded; return how many."""
    message_ids = [message_id for message_id in set(message_ids) if message_id]
    if not message_ids:
        return 0
    with transaction.atomic():
        orphans = list(
            Event.objects.filter(esp=esp, message_id__in=message_ids, recipient__isnull=True)
        )
        if not orphans:
            return 0
        recipients = _lock_recipients(
            esp, {(orphan.message_id, orphan.recipient_address) for orphan in orphans}
        )
        applied: dict[int, list[Event]] = defaultdict(list)
        linked = []
        for orphan in orphans:
            recipient = recipients.get((orphan.message_id, orphan.recipient_address))
            if recipient is not None:
                orphan.recipient = recipient
                linked.append(orphan)
                applied[recipient.pk].append(orphan)
        lean_sql.update_objects(linked, ["recipient"])
        _advance(recipients, applied)
    return len(linked)


def events_link_after_send(record: Message, message_ids: set[str]) -> None:
    """Hook run by sending.services once a send's message ids are recorded."""
    # Raw SQL: this runs after every send, almost always finding nothing.
    connection = connections[router.db_for_read(Event)]
    quote = connection.ops.quote_name
    ids = sorted(message_ids)
    sql = (
        f"SELECT 1 FROM {quote(Event._meta.db_table)} WHERE {quote('esp')} = %s "
        f"AND {quote('recipient_id')} IS NULL "
        f"AND {quote('message_id')} IN ({', '.join(['%s'] * len(ids))}) LIMIT 1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [record.esp, *ids])
        found = cursor.fetchone() is not None
    if found:
        events_link_orphans(esp=record.esp, message_ids=message_ids)


def _lock_recipients(esp: str, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], Recipient]:
    """Fetch (and lock, where the database can) the recipients for (message id, address) pairs."""
    if not pairs:
        return {}
    message_ids = {message_id for message_id, _ in pairs}
    found = lean_sql.select_objects(
        Recipient,
        where={"esp": esp},
        # By message id only: an index seek per id. Adding "address IN (...)"
        # makes SQLite's planner check every address against every id.
        where_in=[("esp_message_id", sorted(message_ids))],
        for_update=True,
    )
    return {
        (recipient.esp_message_id, recipient.address): recipient
        for recipient in found
        if (recipient.esp_message_id, recipient.address) in pairs
    }


def _advance(recipients: dict[tuple[str, str], Recipient], applied: dict[int, list]) -> None:
    by_pk = {recipient.pk: recipient for recipient in recipients.values()}
    # One statement per distinct set of changed fields (a batch of deliveries
    # changes the same fields of many recipients)
    by_fields: dict[tuple[str, ...], list[Recipient]] = defaultdict(list)
    for pk, events in applied.items():
        changed_fields = apply_events(by_pk[pk], events)
        if changed_fields:
            by_fields[tuple(sorted(changed_fields))].append(by_pk[pk])
    for field_names, changed in by_fields.items():
        lean_sql.update_objects(changed, field_names)


def _event_row(
    esp: str,
    key: str,
    event: AnymailTrackingEvent,
    address: str,
    recipient: Recipient | None,
    webhook_call: WebhookCall | None,
) -> dict[str, Any]:
    """An Event row as {attname: value}, for lean_sql.insert_rows."""
    return {
        "esp": esp,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "event_id": str(event.event_id or "")[:255],
        "dedupe_key": key,
        "message_id": (event.message_id or "")[:255],
        "recipient_address": address[:320],
        "recipient_id": recipient.pk if recipient is not None else None,
        "reject_reason": event.reject_reason or "",
        "description": event.description or "",
        "mta_response": event.mta_response or "",
        "user_agent": event.user_agent or "",
        "click_url": event.click_url or "",
        "tags": json_safe(event.tags or []),
        "metadata": json_safe(event.metadata or {}),
        "esp_event": json_safe(event.esp_event),
        "webhook_call_id": webhook_call.pk if webhook_call is not None else None,
        "created_at": timezone.now(),
    }


def _suppression_for(event: AnymailTrackingEvent) -> str | None:
    """The suppression reason an event calls for, if any."""
    if event.event_type == EventType.COMPLAINED:
        return SuppressionReason.COMPLAINED
    if event.event_type == EventType.UNSUBSCRIBED:
        return SuppressionReason.UNSUBSCRIBED
    if event.event_type == EventType.BOUNCED and event.reject_reason in HARD_BOUNCE_REASONS:
        return (
            SuppressionReason.INVALID
            if event.reject_reason == RejectReason.INVALID
            else SuppressionReason.BOUNCED
        )
    return None


def _suppress_from_events(esp: str, events: Iterable[AnymailTrackingEvent]) -> None:
    scope = "" if get_mailhub_setting("SUPPRESSION_SCOPE", "all") == "all" else esp
    wanted: dict[str, tuple[str, AnymailTrackingEvent]] = {}
    for event in events:
        reason = _suppression_for(event)
        if reason and event.recipient:
            wanted.setdefault(normalize_address(event.recipient), (reason, event))
    if not wanted:
        return
    existing = set(
        Suppression.objects.filter(address__in=list(wanted), esp=scope).values_list(
            "address", flat=True
        )
    )
    Suppression.objects.bulk_create(
        [
            Suppression(
                address=address,
                esp=scope,
                reason=reason,
                source=SuppressionSource.EVENT,
                note=_suppression_note(esp, event),
            )
            for address, (reason, event) in wanted.items()
            if address not in existing
        ],
        ignore_conflicts=True,
    )


def _suppression_note(esp: str, event: AnymailTrackingEvent) -> str:
    when = event.timestamp.isoformat() if isinstance(event.timestamp, datetime) else "unknown time"
    detail = event.description or event.mta_response or ""
    note = f"{esp} {event.event_type} event at {when}, message {event.message_id or '?'}"
    return f"{note}: {detail}"[:1000] if detail else note


def json_safe(value: Any) -> Any:
    """Make an ESP's raw event storable as JSON (QueryDicts, bytes, datetimes...)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value) in (dict, list):
        # Most raw events come from json.loads and are storable as they are;
        # json's C encoder says so much faster than walking them here.
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            pass
        else:
            return value
    if hasattr(value, "lists"):  # QueryDict: keep repeated fields
        return {key: values[0] if len(values) == 1 else values for key, values in value.lists()}
    if isinstance(value, dict):
        return {str(key): json_safe(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [json_safe(inner) for inner in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def events_for_recipient(recipient: Recipient) -> Q:
    """Events of a recipient, linked or not yet linked."""
    return Q(recipient=recipient) | Q(
        esp=recipient.esp, message_id=recipient.esp_message_id, recipient_address=recipient.address
    )


# ---------------------------------------------------------------------------
# Reprocessing


def webhook_call_reprocess(*, call: WebhookCall) -> int:
    """Parse a stored call again and record what it says; return how many new events.

    Idempotent: events already stored are skipped, so reprocessing a call
    that was processed changes nothing. Raises AnymailWebhookPayloadError
    (and marks the call failed) if it still can't be parsed.
    """
    from django.urls import Resolver404, resolve

    from sending.exceptions import AnymailWebhookPayloadError

    try:
        view_class = resolve(call.path).func.view_class
    except (Resolver404, AttributeError):
        error = f"No webhook view answers {call.path!r} any more; can't reprocess."
        webhook_call_mark_failed(call=call, error=error)
        raise AnymailWebhookPayloadError(error) from None
    view = view_class()
    request = rebuild_request(call)
    try:
        result = view.process(request, call)
    except AnymailWebhookPayloadError as err:
        webhook_call_mark_failed(call=call, error=str(err))
        raise
    return len(result) if isinstance(result, list) else 1


def rebuild_request(call: WebhookCall) -> Any:
    """An HttpRequest equal to the one stored (for parsing; credentials were redacted)."""
    import io

    from django.core.handlers.wsgi import WSGIRequest

    body = call.get_body()
    environ = {
        "REQUEST_METHOD": call.method,
        "PATH_INFO": call.path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": call.query_string,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "443",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in call.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    if call.content_type and "CONTENT_TYPE" not in environ:
        environ["CONTENT_TYPE"] = call.content_type
    return WSGIRequest(environ)


# ---------------------------------------------------------------------------
# Erasure ("forget me" requests)


def events_forget(*, address: str) -> dict[str, int]:
    """Redact address from its tracking events and the raw webhook calls they came from.

    Each event for address loses the address, its raw ``esp_event``, user
    agent and click URL, and has the address scrubbed from its description
    and MTA response. The stored bodies of the webhook calls those events
    were parsed from have the address (plain or URL-encoded) replaced by
    "[forgotten]"; large bodies kept as files are rewritten once the
    transaction commits. A call keeps its body_sha256, so an ESP retrying
    the same delivery is still recognized.

    Returns counts: events, webhook_calls.
    """
    from functools import partial

    from sending.services import FORGOTTEN, _scrub

    normalized = normalize_address(address)
    if "@" not in normalized:
        raise ValueError(f"Not an email address: {address!r}")
    with transaction.atomic():
        events = list(
            Event.objects.filter(recipient_address=normalized).only(
                "pk", "description", "mta_response", "webhook_call_id"
            )
        )
        call_ids = {event.webhook_call_id for event in events if event.webhook_call_id}
        for event in events:
            event.recipient_address = FORGOTTEN
            event.esp_event = None
            event.user_agent = ""
            event.click_url = ""
            event.description = _scrub(event.description, normalized)
            event.mta_response = _scrub(event.mta_response, normalized)
        redacted = ("recipient_address", "esp_event", "user_agent", "click_url")
        Event.objects.bulk_update(
            events, [*redacted, "description", "mta_response"], batch_size=500
        )

        calls = 0
        for call in WebhookCall.objects.filter(pk__in=call_ids).order_by("pk"):
            body = call.get_body()
            scrubbed = _scrub_body(body, normalized)
            if scrubbed == body:
                continue
            calls += 1
            if call.body_file:
                transaction.on_commit(partial(_rewrite_body_file, call.body_file.name, normalized))
            else:
                WebhookCall.objects.filter(pk=call.pk).update(
                    body=scrubbed, body_size=len(scrubbed)
                )
    return {"events": len(events), "webhook_calls": calls}


def _scrub_body(body: bytes, normalized: str) -> bytes:
    import re
    from urllib.parse import quote, quote_plus

    from sending.services import FORGOTTEN

    forms = {normalized, quote(normalized, safe=""), quote_plus(normalized, safe="")}
    pattern = b"|".join(re.escape(form.encode()) for form in sorted(forms, key=len, reverse=True))
    return re.sub(pattern, FORGOTTEN.encode(), body, flags=re.IGNORECASE)


def _rewrite_body_file(name: str, normalized: str) -> None:

    with default_storage.open(name, "rb") as file:
        body = file.read()
    scrubbed = _scrub_body(body, normalized)
    if scrubbed != body:
        default_storage.delete(name)
        default_storage.save(name, ContentFile(scrubbed))


# ---------------------------------------------------------------------------
# Retention (manage.py purge)


def events_purge(
    *,
    before: datetime,
    batch_size: int = 5000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete events recorded before `before`; return how many were (or would be) deleted.

    Recipients keep the state the events advanced (status, timestamps, counts).
    """
    events = Event.objects.filter(created_at__lt=before)
    if dry_run:
        return events.count()
    deleted = 0
    for batch in pk_batches(events, batch_size):
        Event.objects.filter(pk__in=batch).delete()
        deleted += len(batch)
        if on_batch:
            on_batch(len(batch))
    return deleted


def webhook_calls_purge(
    *,
    before: datetime,
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete webhook calls received before `before` (and their body files); return how many.

    Events parsed from them stay (without the link to their call).
    """
    calls = WebhookCall.objects.filter(received_at__lt=before)
    if dry_run:
        return calls.count()
    deleted = 0
    for batch in pk_batches(calls, batch_size):
        with transaction.atomic():
            names = set(
                WebhookCall.objects.filter(pk__in=batch)
                .exclude(body_file="")
                .values_list("body_file", flat=True)
            )
            WebhookCall.objects.filter(pk__in=batch).delete()
            if names:
                transaction.on_commit(
                    partial(delete_unreferenced_files, names, [(WebhookCall, "body_file")])
                )
        deleted += len(batch)
        if on_batch:
            on_batch(len(batch))
    return deleted
