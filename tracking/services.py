"""Writes for the tracking app: raw webhook calls, events, recipient state, suppressions.

The base webhook view is the only caller of the ``webhook_call_*`` and
``events_record`` functions, so every ESP is recorded the same way.
Recording one webhook call is one transaction with set-based writes: one
INSERT for the call itself, one SELECT for the recipients involved
(locked), one INSERT for the events that skips those already stored, one
UPDATE (executemany) per set of recipient fields that changed, and one
INSERT for new suppressions. Rows are built as tuples, without model
instances (sending.lean_sql).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sending import lean_sql
from sending.models import Recipient, Suppression, SuppressionReason, SuppressionSource
from sending.signals import AnymailTrackingEvent, EventType, RejectReason
from sending.utils import (
    delete_unreferenced_files,
    get_mailhub_setting,
    normalize_address,
    pk_batches,
)

from .models import Event, WebhookCall, WebhookCallStatus
from .status import STATE_FIELDS, apply_events

# Bodies up to this size are kept in the row; larger ones go to storage.
INLINE_BODY_LIMIT = 256 * 1024

# Bounces that mean the address will never accept mail. Blocks, spam
# filtering and time-outs are often temporary, so they don't suppress.
HARD_BOUNCE_REASONS = frozenset({RejectReason.BOUNCED, RejectReason.INVALID, None, ""})

# The columns of a suppression added by an event.
SUPPRESSION_FIELDS = (
    "address",
    "esp",
    "reason",
    "source",
    "created_at",
    "expires_at",
    "note",
    "created_by_id",
)

T = TypeVar("T")


# ---------------------------------------------------------------------------
# Raw webhook calls

# The columns of a stored call, written in one INSERT.
CALL_FIELDS = (
    "esp",
    "kind",
    "received_at",
    "method",
    "path",
    "query_string",
    "content_type",
    "headers",
    "body",
    "body_file",
    "body_size",
    "body_sha256",
    "status",
    "error",
    "processed_at",
    "attempts",
    "event_count",
)


def webhook_call_receive(
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
    """The WebhookCall for a request; return (call, already_processed).

    An identical body already stored for the same ESP and kind is an ESP
    retry of that call: it is returned, and already_processed says whether
    it needs anything more. Otherwise the call is new and not yet saved:
    webhook_call_record stores it with what it says, in one transaction, or
    webhook_call_mark_failed stores it with the error.
    """
    sha256 = hashlib.sha256(body).hexdigest()
    stored = lean_sql.select_values(
        WebhookCall, ("id",), where={"esp": esp, "kind": kind, "body_sha256": sha256}
    )
    if stored:
        existing = WebhookCall.objects.get(pk=stored[-1][0])  # the latest
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
    return call, False


def webhook_call_record(
    *, call: WebhookCall, record: Callable[[WebhookCall], list[T]], expected: int
) -> list[T]:
    """Store call (when new) and what record(call) stores in one transaction, marked processed.

    record writes what the call says and returns what was new (events,
    messages): the call's event_count. A new call is inserted already
    marked processed with `expected` new ones, so in the usual case it is
    written once; it is corrected when fewer were new. If anything fails,
    nothing is kept, call is left as it was, and the error propagates: the
    caller keeps the call with webhook_call_mark_failed.
    """
    now = timezone.now()
    inserted = call.pk is None
    try:
        with transaction.atomic():
            if inserted:
                call.pk = _webhook_call_insert(
                    call,
                    status=WebhookCallStatus.PROCESSED,
                    error="",
                    processed_at=now,
                    attempts=call.attempts + 1,
                    event_count=expected,
                )
            new = record(call)
            if not inserted or len(new) != expected:
                lean_sql.update(
                    WebhookCall,
                    {
                        "status": WebhookCallStatus.PROCESSED,
                        "error": "",
                        "processed_at": now,
                        "event_count": len(new),
                        "attempts": call.attempts + 1,
                    },
                    where={"id": call.pk},
                )
    except BaseException:
        if inserted:
            call.pk = None
        raise
    call._state.adding = False
    call.status, call.error, call.processed_at = WebhookCallStatus.PROCESSED, "", now
    call.event_count = len(new)
    call.attempts += 1
    return new


def webhook_call_mark_failed(*, call: WebhookCall, error: str) -> None:
    """Keep call, marked failed with error, for reprocessing; store it if it is new.

    A call whose row was rolled back (by a transaction around the caller's)
    is stored again.
    """
    updated = 0
    if call.pk is not None:
        updated = lean_sql.update(
            WebhookCall,
            {"status": WebhookCallStatus.FAILED, "error": error, "attempts": call.attempts + 1},
            where={"id": call.pk},
        )
    if not updated:
        call.pk = _webhook_call_insert(
            call, status=WebhookCallStatus.FAILED, error=error, attempts=call.attempts + 1
        )
        call._state.adding = False
    call.status, call.error = WebhookCallStatus.FAILED, error
    call.attempts += 1


def webhook_call_keep_failed(*, call: WebhookCall, error: str) -> bool:
    """Keep a call whose processing raised error: stored, marked failed, for reprocessing.

    Return False, changing nothing, if the call was recorded (processed)
    before the error: it came after, from a signal receiver.
    """
    if call.pk is not None:
        status = lean_sql.select_values(WebhookCall, ("status",), where={"id": call.pk})
        if status == [(WebhookCallStatus.PROCESSED,)]:
            return False
    webhook_call_mark_failed(call=call, error=error)
    return True


def _webhook_call_insert(call: WebhookCall, **values: Any) -> int:
    """INSERT call with values in place of its own; return the new pk."""
    row = [values[name] if name in values else getattr(call, name) for name in CALL_FIELDS]
    (pk,) = lean_sql.insert_values(WebhookCall, CALL_FIELDS, [row], returning="id")
    return pk


# ---------------------------------------------------------------------------
# Events

# The columns of a stored event, in the order _event_row gives them.
EVENT_FIELDS = (
    "esp",
    "event_type",
    "timestamp",
    "event_id",
    "dedupe_key",
    "message_id",
    "recipient_address",
    "recipient_id",
    "reject_reason",
    "description",
    "mta_response",
    "user_agent",
    "click_url",
    "tags",
    "metadata",
    "esp_event",
    "webhook_call_id",
    "created_at",
)
_DEDUPE_KEY = EVENT_FIELDS.index("dedupe_key")
_RECIPIENT_ID = EVENT_FIELDS.index("recipient_id")

# What recording reads of a Recipient, and may advance.
RECIPIENT_STATE_FIELDS = ("id", "esp_message_id", "address", *STATE_FIELDS)


class RecipientState:
    """A Recipient's delivery state, read for advancing by events (no model instance)."""

    def __init__(self, values: Sequence[Any]) -> None:
        self.__dict__.update(zip(RECIPIENT_STATE_FIELDS, values, strict=True))


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
    addresses = {
        key: normalize_address(event.recipient) if event.recipient else ""
        for key, event in by_key.items()
    }
    now = timezone.now()
    call_id = webhook_call.pk if webhook_call is not None else None

    with transaction.atomic(savepoint=False):
        recipients = _lock_recipients(
            esp,
            {
                (event.message_id, addresses[key])
                for key, event in by_key.items()
                if event.message_id and event.recipient
            },
        )
        rows = []
        for key, event in by_key.items():
            address = addresses[key]
            recipient = recipients.get((event.message_id, address))
            rows.append(_event_row(esp, key, event, address, recipient, call_id, now))
        # An event already stored (a duplicate delivery, or a concurrent call
        # that got here first) conflicts and is skipped: only the keys that
        # come back are new, and only new events advance state.
        inserted = set(
            lean_sql.insert_values(
                Event, EVENT_FIELDS, rows, ignore_conflicts=True, returning="dedupe_key"
            )
        )
        new = [row for row in rows if row[_DEDUPE_KEY] in inserted]
        applied: dict[int, list[AnymailTrackingEvent]] = defaultdict(list)
        for row in new:
            if row[_RECIPIENT_ID] is not None:
                applied[row[_RECIPIENT_ID]].append(by_key[row[_DEDUPE_KEY]])
        _advance(recipients, applied)
        new_events = [by_key[row[_DEDUPE_KEY]] for row in new]
        _suppress_from_events(esp, new_events, now)
    return new_events


def events_link_orphans(*, esp: str, message_ids: Iterable[str]) -> int:
    """Link stored events that arrived before their message was recorded; return how many."""
    message_ids = [message_id for message_id in set(message_ids) if message_id]
    if not message_ids:
        return 0
    with transaction.atomic():
        # By message id only, orphans picked here: "recipient IS NULL" in SQL
        # can lead SQLite's planner (without statistics) to the recipient
        # index, which holds every orphan. A message has few events.
        orphans = [
            event
            for event in Event.objects.filter(esp=esp, message_id__in=message_ids)
            if event.recipient_id is None
        ]
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
                orphan.recipient_id = recipient.id
                linked.append(orphan)
                applied[recipient.id].append(orphan)
        lean_sql.update_objects(linked, ["recipient"])
        _advance(recipients, applied)
    return len(linked)


def events_link_after_send(esp: str, message_ids: set[str]) -> None:
    """Hook run by sending.services once sends' ESP message ids are recorded."""
    # This runs after every send, almost always finding no event at all. By
    # message id only, the orphan test in Python (as in events_link_orphans).
    linked = lean_sql.select_values(
        Event, ("recipient_id",), where={"esp": esp}, where_in=[("message_id", sorted(message_ids))]
    )
    if (None,) in linked:
        events_link_orphans(esp=esp, message_ids=message_ids)


def _lock_recipients(
    esp: str, pairs: set[tuple[str, str]]
) -> dict[tuple[str, str], RecipientState]:
    """Fetch (and lock, where the database can) the recipients for (message id, address) pairs."""
    if not pairs:
        return {}
    message_ids = {message_id for message_id, _ in pairs}
    found = lean_sql.select_values(
        Recipient,
        RECIPIENT_STATE_FIELDS,
        where={"esp": esp},
        # By message id only: an index seek per id. Adding "address IN (...)"
        # makes SQLite's planner check every address against every id.
        where_in=[("esp_message_id", sorted(message_ids))],
        for_update=True,
    )
    recipients = {}
    for values in found:
        key = (values[1], values[2])  # esp_message_id, address
        if key in pairs:
            recipients[key] = RecipientState(values)
    return recipients


def _advance(recipients: dict[tuple[str, str], RecipientState], applied: dict[int, list]) -> None:
    by_pk = {recipient.id: recipient for recipient in recipients.values()}
    # One statement per distinct set of changed fields (a batch of deliveries
    # changes the same fields of many recipients)
    by_fields: dict[tuple[str, ...], list[RecipientState]] = defaultdict(list)
    for pk, events in applied.items():
        changed_fields = apply_events(by_pk[pk], events)
        if changed_fields:
            by_fields[tuple(sorted(changed_fields))].append(by_pk[pk])
    for field_names, changed in by_fields.items():
        lean_sql.update_values(
            Recipient,
            field_names,
            [[*(getattr(state, name) for name in field_names), state.id] for state in changed],
        )


def _event_row(
    esp: str,
    key: str,
    event: AnymailTrackingEvent,
    address: str,
    recipient: RecipientState | None,
    call_id: int | None,
    now: datetime,
) -> tuple[Any, ...]:
    """An Event row, values in EVENT_FIELDS order, for lean_sql.insert_values."""
    return (
        esp,
        event.event_type,
        event.timestamp,
        str(event.event_id or "")[:255],
        key,
        (event.message_id or "")[:255],
        address[:320],
        recipient.id if recipient is not None else None,
        event.reject_reason or "",
        event.description or "",
        event.mta_response or "",
        event.user_agent or "",
        event.click_url or "",
        _json_text(event.tags or []),
        _json_text(event.metadata or {}),
        _json_text(event.esp_event),
        call_id,
        now,
    )


def _json_text(value: Any) -> lean_sql.JSONText | None:
    """value serialized for a JSON column (None: SQL NULL), made storable first if need be."""
    if value is None:
        return None
    if not value and type(value) in (dict, list):
        return lean_sql.JSONText("{}" if type(value) is dict else "[]")
    if type(value) in (dict, list):
        # Most raw events come from json.loads and serialize as they are.
        try:
            return lean_sql.JSONText(json.dumps(value))
        except (TypeError, ValueError):
            pass
    return lean_sql.JSONText(json.dumps(json_safe(value)))


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


def _suppress_from_events(esp: str, events: Iterable[AnymailTrackingEvent], now: datetime) -> None:
    scope = "" if get_mailhub_setting("SUPPRESSION_SCOPE", "all") == "all" else esp
    wanted: dict[str, tuple[str, AnymailTrackingEvent]] = {}
    for event in events:
        reason = _suppression_for(event)
        if reason and event.recipient:
            wanted.setdefault(normalize_address(event.recipient), (reason, event))
    if not wanted:
        return
    # An address already suppressed (in this scope) conflicts and keeps its row.
    lean_sql.insert_values(
        Suppression,
        SUPPRESSION_FIELDS,
        [
            (
                address,
                scope,
                reason,
                SuppressionSource.EVENT,
                now,
                None,
                _suppression_note(esp, event),
                None,
            )
            for address, (reason, event) in wanted.items()
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
