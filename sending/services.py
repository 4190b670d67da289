"""Writes for the sending app: recording sends, suppressions, rebuilding messages.

The base backend is the only caller of the ``message_record_*`` functions
(with the queued backend, which records a message without sending it: a
worker's send then updates that record through the same pipeline), so every
ESP records the same way. Writes are set-based (one INSERT per
table, one UPDATE per distinct outcome) to keep recording cheap next to
the ESP call it brackets.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from django.core.mail import EmailMessage
from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from . import lean_sql
from .backends.base import DEFAULTS_APPLIED_ATTR, RECORD_REUSE_ATTR, RecordReuse
from .exceptions import AnymailError
from .message import ANYMAIL_ATTRS, AnymailMessage, AnymailStatus
from .models import (
    Message,
    MessageStatus,
    Recipient,
    SendStatus,
    StoredAttachment,
    Suppression,
    SuppressionReason,
    SuppressionSource,
)
from .utils import (
    Attachment,
    delete_unreferenced_files,
    get_mailhub_setting,
    normalize_address,
    pk_batches,
    store_content_once,
)

if TYPE_CHECKING:
    from .backends.base import AnymailBaseBackend, BasePayload

ACCEPTED_STATUSES = frozenset({"sent", "queued"})

#: Set on an EmailMessage once it is recorded: the id of its Message row.
RECORD_ID_ATTR = "mailhub_record_id"
#: Set on a rebuilt EmailMessage by message_resend, read when it is recorded.
RESEND_OF_ATTR = "_mailhub_resend_of"
REQUESTED_BY_ATTR = "_mailhub_requested_by"

#: Run inside the transaction that records send outcomes, once per ESP, with
#: (ESP key, the ESP message ids just recorded). The tracking app registers
#: the hook that links events which arrived before their message was
#: recorded (imports point from tracking to sending, never back).
RESULT_RECORDED_HOOKS: list[Callable[[str, set[str]], None]] = []
REFUSED_STATUSES = frozenset({"invalid", "rejected", "suppressed"})
#: Addresses per suppression query (well under every database's parameter limit).
SUPPRESSION_LOOKUP_BATCH = 500


# ---------------------------------------------------------------------------
# Recording sends


def message_record_start(*, backend: AnymailBaseBackend, payload: BasePayload) -> Message:
    """Write the Message, its Recipients and attachments before the ESP is called.

    A message that already has a record (one a worker took from the queue, or
    one the routing backend is handing to the next ESP: RECORD_REUSE_ATTR)
    updates that record to "sending" through this backend instead.
    """
    reuse = getattr(payload.message, RECORD_REUSE_ATTR, None)
    if reuse is not None:
        return _message_record_restart(reuse=reuse, backend=backend, payload=payload)
    return message_record_start_many(backend=backend, payloads=[payload])[0]


def message_record_start_many(
    *, backend: AnymailBaseBackend, payloads: Sequence[BasePayload]
) -> list[Message]:
    """Write the records of several messages before any of them goes to the ESP.

    One transaction and one INSERT per table for the lot: the base backend
    records each chunk of a send_messages() call this way. The payloads'
    messages must not reuse a record (see message_record_start).
    """
    return _message_records_insert(
        backend=backend, payloads=payloads, status=MessageStatus.SENDING, attempts=1
    )


def message_record_queued(
    *,
    backend: AnymailBaseBackend,
    payload: BasePayload,
    queue_backend: str,
    idempotency_key: str = "",
) -> Message:
    """Write a message queued for a worker (no ESP call): Message, Recipients, attachments.

    payload is built by the backend the worker will send through, so the
    record holds exactly what it will send (send defaults merged in).
    """
    return _message_records_insert(
        backend=backend,
        payloads=[payload],
        status=MessageStatus.QUEUED,
        attempts=0,
        queue_backend=queue_backend,
        idempotency_key=idempotency_key,
        next_attempt_at=timezone.now(),
    )[0]


def _message_records_insert(
    *,
    backend: AnymailBaseBackend,
    payloads: Sequence[BasePayload],
    status: str,
    attempts: int,
    **fields: Any,
) -> list[Message]:
    store_content = bool(get_mailhub_setting("STORE_CONTENT", True))
    now = timezone.now()
    common = {
        "created_at": now,
        "updated_at": now,
        "backend": backend.backend_path,
        "esp": backend.esp_key,
        "status": status,
        "attempts": attempts,
        "content_stored": store_content,
        **fields,
    }
    message_rows = [_message_row(payload, common, store_content) for payload in payloads]
    with transaction.atomic():
        pks = lean_sql.insert_rows(Message, message_rows, returning="id")
        recipient_rows: list[dict[str, Any]] = []
        attachment_rows: list[dict[str, Any]] = []
        for pk, payload in zip(pks, payloads, strict=True):
            recipient_rows += _recipient_rows(pk, payload, common["esp"])
            attachment_rows += _attachment_rows(pk, payload, store_content)
        lean_sql.insert_rows(Recipient, recipient_rows)
        lean_sql.insert_rows(StoredAttachment, attachment_rows)
    records = []
    alias = router.db_for_write(Message)
    for pk, payload in zip(pks, payloads, strict=True):
        setattr(payload.message, RECORD_ID_ATTR, pk)
        # The columns the send path reads back; others load on first access.
        records.append(
            Message.from_db(
                alias,
                ("id", "backend", "esp", "status"),
                (pk, common["backend"], common["esp"], status),
            )
        )
    return records


def _message_row(payload: BasePayload, common: dict[str, Any], store_content: bool) -> dict:
    """The Message row for payload: everything needed to rebuild the message later.

    Text values are made plain str here (lean_sql passes text to the driver
    as it is, and the message may hold lazy translations).
    """
    effective = payload.effective
    message = payload.message
    row = {
        **common,
        "resend_of_id": getattr(message, RESEND_OF_ATTR, None),
        "requested_by_id": getattr(message, REQUESTED_BY_ATTR, None),
        "from_email": str(effective.get("from_email") or ""),
        "to": _address_strings(effective.get("to")),
        "cc": _address_strings(effective.get("cc")),
        "bcc": _address_strings(effective.get("bcc")),
        "reply_to": _address_strings(effective.get("reply_to")),
        "subject": None if effective.get("subject") is None else str(effective["subject"]),
        "content_subtype": getattr(message, "content_subtype", "plain"),
        "extra_headers": _json_safe(effective.get("extra_headers") or {}),
        "envelope_sender": str(effective.get("envelope_sender") or ""),
        "tags": _json_safe(effective.get("tags") or []),
        "metadata": _json_safe(effective.get("metadata") or {}),
        "merge_metadata": _json_safe(effective.get("merge_metadata")),
        "merge_headers": _json_safe(effective.get("merge_headers")),
        "merge_data": _json_safe(effective.get("merge_data")),
        "merge_global_data": _json_safe(effective.get("merge_global_data")),
        "template_id": str(effective.get("template_id") or ""),
        "esp_extra": _json_safe(effective.get("esp_extra")),
        "track_opens": effective.get("track_opens"),
        "track_clicks": effective.get("track_clicks"),
        "send_at": _send_at(effective.get("send_at")),
    }
    if store_content:
        row["body"] = str(effective.get("body") or "")
        row["alternatives"] = [
            [str(content), mimetype] for content, mimetype in effective.get("alternatives") or []
        ]
    return row


def _recipient_rows(message_pk: int, payload: BasePayload, esp: str) -> list[dict[str, Any]]:
    rows = []
    for kind in ("to", "cc", "bcc"):
        for address in payload.parsed_recipients[kind]:
            normalized = normalize_address(address.addr_spec)
            rows.append(
                {
                    "message_id": message_pk,
                    "kind": kind,
                    "address": normalized,
                    "display_name": address.display_name,
                    "esp": esp,
                    "send_status": SendStatus.SUPPRESSED
                    if normalized in payload.suppressed
                    else SendStatus.PENDING,
                }
            )
    return rows


def _attachment_rows(
    message_pk: int, payload: BasePayload, store_content: bool
) -> list[dict[str, Any]]:
    encoding = getattr(payload.message, "encoding", None) or "utf-8"
    rows = []
    for position, item in enumerate(payload.effective.get("attachments") or []):
        attachment = Attachment(item, encoding)
        content = attachment.content or b""
        sha256 = hashlib.sha256(content).hexdigest()
        rows.append(
            {
                "message_id": message_pk,
                "position": position,
                "filename": str(attachment.name or ""),
                "mimetype": attachment.mimetype,
                "inline": attachment.inline,
                "content_id": attachment.content_id or "",
                "size": len(content),
                "sha256": sha256,
                "file": store_content_once("mailhub/attachments", sha256, content)
                if store_content
                else "",
            }
        )
    return rows


class RecordNotClaimed(Exception):
    """The record to reuse isn't in the status expected: someone else has taken it."""


def _message_record_restart(
    *, reuse: RecordReuse, backend: AnymailBaseBackend, payload: BasePayload
) -> Message:
    """Take an existing record for one more attempt through backend: "sending", recipients reset.

    The UPDATE is also the claim: it applies only while the record is in
    reuse.from_status, so of two workers handed the same queued message,
    one sends it and the other gets RecordNotClaimed before any ESP call.
    """
    record_id = reuse.record_id
    now = timezone.now()
    esp = backend.esp_key
    suppressed = [normalize_address(address.addr_spec) for address in payload.suppressed_recipients]
    with transaction.atomic():
        updated = Message.objects.filter(pk=record_id, status=reuse.from_status).update(
            status=MessageStatus.SENDING,
            backend=backend.backend_path,
            esp=esp,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            updated_at=now,
        )
        if not updated:
            raise RecordNotClaimed(
                f"Message {record_id} is no longer {reuse.from_status!r} (another worker "
                "took it, or it was deleted); not sending it."
            )
        lean_sql.update(
            Recipient,
            {"send_status": SendStatus.PENDING, "esp": esp, "esp_message_id": ""},
            where={"message": record_id},
        )
        if suppressed:
            lean_sql.update(
                Recipient,
                {"send_status": SendStatus.SUPPRESSED},
                where={"message": record_id},
                where_in=("address", suppressed),
            )
    record = Message(
        pk=record_id, backend=backend.backend_path, esp=esp, status=MessageStatus.SENDING
    )
    record._state.adding = False
    setattr(payload.message, RECORD_ID_ATTR, record_id)
    return record


def message_record_result(*, record: Message, status: AnymailStatus) -> None:
    """Record the ESP's answer: the aggregate status and each recipient's."""
    message_record_outcomes(outcomes=[(record, status)])


def message_record_outcomes(
    *, outcomes: Sequence[tuple[Message, AnymailStatus | BaseException]]
) -> None:
    """Record the outcome of each send in one transaction.

    An outcome is the message's AnymailStatus (the ESP answered) or the
    exception that ended the send (the record is failed, with the error
    text). Each kind of write is one statement for every message
    (lean_sql.update_many), whatever their number.
    """
    now = timezone.now()
    sent_rows, recipient_rows, recipient_address_rows = [], [], []
    failed_rows, failed_recipient_rows = [], []
    message_ids_by_esp: dict[str, set[str]] = defaultdict(set)
    for record, outcome in outcomes:
        if isinstance(outcome, BaseException):
            record.status = MessageStatus.FAILED
            record.error = f"{type(outcome).__name__}: {outcome}"
            failed_rows.append((record.status, record.error, now, record.pk))
            failed_recipient_rows.append((SendStatus.FAILED, record.pk, SendStatus.PENDING))
            continue
        record.status = _aggregate_status(outcome.status or set())
        record.esp_message_id = outcome.message_id if isinstance(outcome.message_id, str) else ""
        sent_at = now if record.status == MessageStatus.SENT else None
        sent_rows.append((record.status, record.esp_message_id, sent_at, now, record.pk))
        by_outcome: dict[tuple[str, str], list[str]] = defaultdict(list)
        for addr_spec, recipient_status in outcome.recipients.items():
            key = (recipient_status.status or SendStatus.UNKNOWN, recipient_status.message_id or "")
            by_outcome[key].append(normalize_address(addr_spec))
        if len(by_outcome) == 1:
            ((send_status, esp_message_id),) = by_outcome
            recipient_rows.append((send_status, esp_message_id, record.pk))
        else:
            for (send_status, esp_message_id), addresses in by_outcome.items():
                recipient_address_rows += [
                    (send_status, esp_message_id, record.pk, address) for address in addresses
                ]
        message_ids = {esp_message_id for _, esp_message_id in by_outcome if esp_message_id}
        if message_ids:
            message_ids_by_esp[record.esp].update(message_ids)

    with transaction.atomic():
        lean_sql.update_many(
            Message, ("status", "esp_message_id", "sent_at", "updated_at"), ("id",), sent_rows
        )
        lean_sql.update_many(
            Recipient, ("send_status", "esp_message_id"), ("message",), recipient_rows
        )
        lean_sql.update_many(
            Recipient,
            ("send_status", "esp_message_id"),
            ("message", "address"),
            recipient_address_rows,
        )
        lean_sql.update_many(Message, ("status", "error", "updated_at"), ("id",), failed_rows)
        lean_sql.update_many(
            Recipient, ("send_status",), ("message", "send_status"), failed_recipient_rows
        )
        for esp, message_ids in message_ids_by_esp.items():
            for hook in RESULT_RECORDED_HOOKS:
                hook(esp, message_ids)


def message_records_discard(*, records: Sequence[Message]) -> None:
    """Delete records written for messages that were then never sent.

    When one message of a send_messages() chunk raises, the rest of the
    chunk (already recorded) is not sent, as if it had never been handed
    over: their records go.
    """
    if records:
        _messages_delete([record.pk for record in records])


def _messages_delete(pks: list[int]) -> None:
    """Delete these messages (with recipients and attachments) in one transaction.

    After the commit, their attachment files that no row uses any more go too.
    """
    with transaction.atomic():
        names = set(
            StoredAttachment.objects.filter(message_id__in=pks)
            .exclude(file="")
            .values_list("file", flat=True)
        )
        Message.objects.filter(pk__in=pks).delete()
        if names:
            transaction.on_commit(
                partial(delete_unreferenced_files, names, [(StoredAttachment, "file")])
            )


def _aggregate_status(statuses: set[str]) -> str:
    if statuses & ACCEPTED_STATUSES:
        return MessageStatus.SENT
    if statuses and statuses <= {"suppressed"}:
        return MessageStatus.SUPPRESSED
    if statuses and statuses <= REFUSED_STATUSES:
        return MessageStatus.REJECTED
    if "failed" in statuses:
        return MessageStatus.FAILED
    return MessageStatus.UNKNOWN


def _address_strings(addresses: Any) -> list[str]:
    if not addresses:
        return []
    if isinstance(addresses, str):
        return [addresses]
    return [str(address) for address in addresses]


def _send_at(value: Any) -> datetime | None:
    if value is None:
        return None
    from .utils import aware_datetime

    return aware_datetime(value)


def _json_safe(value: Any) -> Any:
    """Make value storable as JSON: lazy strings and unknown types become str."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(key): _json_safe(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_safe(inner) for inner in value]
    return str(value)


# ---------------------------------------------------------------------------
# Rebuilding a stored message


def message_rebuild(*, record: Message) -> EmailMessage:
    """Return an EmailMessage equal to the one recorded, ready to send again.

    The stored attributes already include the send defaults that applied;
    the rebuilt message is marked so they are not merged in a second time.
    Raises ValueError when the content was not stored (privacy setting).
    """
    if not record.content_stored:
        raise ValueError(
            f"Message {record.pk} was recorded without its content; it can't be rebuilt."
        )
    email = AnymailMessage(
        subject=record.subject or "",
        body=record.body,
        from_email=record.from_email or None,
        to=list(record.to),
        cc=list(record.cc),
        bcc=list(record.bcc),
        reply_to=list(record.reply_to),
        headers=dict(record.extra_headers),
    )
    if record.subject is None:
        email.subject = None
    if not record.from_email:
        email.from_email = None
    email.content_subtype = record.content_subtype
    for content, mimetype in record.alternatives:
        email.attach_alternative(content, mimetype)
    for stored in record.attachments.all():
        with stored.file.open("rb") as file:
            content = file.read()
        email.attach(_rebuilt_attachment(stored, content))
    for attr in ANYMAIL_ATTRS:
        value = getattr(record, attr)
        # None (a nullable field) means "not set". An empty merge_data is
        # meaningful (it asks for a batch send), so only blank strings and
        # the always-present list/dict fields count as unset when empty.
        if value is None or (value in ("", [], {}) and attr in _BLANK_MEANS_UNSET):
            continue
        setattr(email, attr, value)
    setattr(email, DEFAULTS_APPLIED_ATTR, record.esp or True)
    return email


_BLANK_MEANS_UNSET = frozenset({"envelope_sender", "template_id", "tags", "metadata"})


def _rebuilt_attachment(stored: StoredAttachment, content: bytes) -> Any:
    from email.mime.base import MIMEBase

    maintype, _, subtype = stored.mimetype.partition("/")
    part = MIMEBase(maintype or "application", subtype or "octet-stream")
    part.set_payload(content)
    from email import encoders

    encoders.encode_base64(part)
    disposition = "inline" if stored.inline else "attachment"
    if stored.filename:
        part.add_header("Content-Disposition", disposition, filename=stored.filename)
    else:
        part.add_header("Content-Disposition", disposition)
    if stored.content_id:
        part.add_header("Content-ID", stored.content_id)
    return part


def message_resend(
    *, record: Message, backend_path: str | None = None, requested_by: Any = None
) -> Message:
    """Send a stored message again, as a new Message linked by resend_of.

    Goes through the whole send pipeline of the original backend (or of
    backend_path), so suppression applies and the outcome is recorded.
    Returns the new record; the send's own errors (AnymailAPIError,
    AnymailRecipientsRefused...) reach the caller after it is recorded, with
    the new record's id as ``error.mailhub_record_id``.
    """
    from django.utils.module_loading import import_string

    email = message_rebuild(record=record)
    setattr(email, RESEND_OF_ATTR, record.pk)
    setattr(email, REQUESTED_BY_ATTR, getattr(requested_by, "pk", requested_by))
    backend = import_string(backend_path or record.backend)()
    try:
        backend.send_messages([email])
    except AnymailError as error:
        # Tell the caller which record the failed send left (None: nothing was recorded).
        error.mailhub_record_id = getattr(email, RECORD_ID_ATTR, None)
        raise
    new_id = getattr(email, RECORD_ID_ATTR, None)
    if new_id is None:
        raise ValueError(
            f"Resending message {record.pk} recorded nothing: the send was cancelled, "
            "or recording is off (MAILHUB['STORE'])."
        )
    return Message.objects.get(pk=new_id)


# ---------------------------------------------------------------------------
# Suppressions


def suppressed_addresses(*, addresses: Iterable[str], esp: str) -> set[str]:
    """Return which of addresses (normalized) are suppressed for esp now."""
    normalized = sorted({normalize_address(address) for address in addresses})
    if not normalized:
        return set()
    # Raw SQL: this runs before every send, and the ORM's query building
    # costs more than the indexed lookup itself.
    connection = connections[router.db_for_read(Suppression)]
    quote = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    found = set()
    with connection.cursor() as cursor:
        for start in range(0, len(normalized), SUPPRESSION_LOOKUP_BATCH):
            batch = normalized[start : start + SUPPRESSION_LOOKUP_BATCH]
            sql = (
                f"SELECT {quote('address')} FROM {quote(Suppression._meta.db_table)} "
                f"WHERE {quote('address')} IN ({', '.join(['%s'] * len(batch))}) "
                f"AND {quote('esp')} IN (%s, %s) "
                f"AND ({quote('expires_at')} IS NULL OR {quote('expires_at')} > %s)"
            )
            cursor.execute(sql, [*batch, "", esp, now])
            found.update(row[0] for row in cursor.fetchall())
    return found


def suppression_add(
    *,
    address: str,
    reason: str = SuppressionReason.MANUAL,
    esp: str = "",
    source: str = SuppressionSource.MANUAL,
    expires_at: datetime | None = None,
    note: str = "",
    created_by: Any = None,
) -> Suppression:
    """Suppress address (for every ESP, or only esp); update it if already there."""
    normalized = normalize_address(address)
    if "@" not in normalized:
        raise ValueError(f"Not an email address: {address!r}")
    suppression, _created = Suppression.objects.update_or_create(
        address=normalized,
        esp=esp,
        defaults={
            "reason": reason,
            "source": source,
            "expires_at": expires_at,
            "note": note,
            "created_by": created_by,
        },
    )
    return suppression


def suppression_remove(*, address: str, esp: str | None = None) -> int:
    """Remove address's suppressions (only the one scoped to esp, if given)."""
    suppressions = Suppression.objects.filter(address=normalize_address(address))
    if esp is not None:
        suppressions = suppressions.filter(esp=esp)
    deleted, _ = suppressions.delete()
    return deleted


__all__ = [
    "message_rebuild",
    "message_record_outcomes",
    "message_record_queued",
    "message_record_result",
    "message_record_start",
    "message_record_start_many",
    "message_records_discard",
    "suppressed_addresses",
    "suppression_add",
    "suppression_remove",
]


# ---------------------------------------------------------------------------
# Suppression lists as CSV

SUPPRESSION_CSV_COLUMNS = ("address", "reason", "esp", "expires_at", "note")


@dataclass
class SuppressionImportResult:
    """What an import did: rows added or updated, and each bad row with its line number."""

    created: int = 0
    updated: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def suppressions_import_csv(
    *,
    lines: Iterable[str],
    source: str = SuppressionSource.IMPORT,
    created_by: Any = None,
    dry_run: bool = False,
    max_rows: int = 100_000,
) -> SuppressionImportResult:
    """Import suppressions from CSV text with a header row (address required; reason,
    esp, expires_at (ISO 8601), note optional).

    Every row is checked first; if any row is bad nothing is written and each
    bad row is reported with its line number. With dry_run nothing is written.
    """
    import csv

    from django.utils.dateparse import parse_datetime

    result = SuppressionImportResult()
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
    except csv.Error as error:
        result.errors.append((1, f"Not valid CSV: {error}"))
        return result
    if not header or "address" not in [name.strip() for name in header]:
        result.errors.append((1, "The header row must include an 'address' column."))
        return result
    valid_reasons = set(SuppressionReason.values)
    max_lengths = {
        name: Suppression._meta.get_field(name).max_length for name in ("address", "esp")
    }
    rows: dict[tuple[str, str], dict] = {}
    for number, row in enumerate(_csv_records(reader, result.errors), start=2):
        if number - 1 > max_rows:
            result.errors.append((number, f"Too many rows: at most {max_rows} per import."))
            break
        if None in row:  # DictReader's key for fields beyond the header's
            result.errors.append((number, "More fields than the header row names."))
            continue
        row = {(key or "").strip(): (value or "").strip() for key, value in row.items()}
        address = normalize_address(row.get("address", ""))
        reason = row.get("reason") or SuppressionReason.MANUAL
        expires_text = row.get("expires_at", "")
        expires_at = None
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            result.errors.append((number, f"Not an email address: {row.get('address', '')!r}"))
            continue
        too_long = [name for name, limit in max_lengths.items() if len(row.get(name, "")) > limit]
        if too_long:
            name = too_long[0]
            result.errors.append((number, f"{name} is longer than {max_lengths[name]} characters."))
            continue
        if reason not in valid_reasons:
            result.errors.append(
                (number, f"Unknown reason {reason!r} (one of: {', '.join(sorted(valid_reasons))})")
            )
            continue
        if expires_text:
            try:
                expires_at = parse_datetime(expires_text)
            except ValueError:
                expires_at = None
            if expires_at is None:
                result.errors.append(
                    (number, f"expires_at is not an ISO 8601 datetime: {expires_text!r}")
                )
                continue
            if timezone.is_naive(expires_at):
                # Naive times in the file are UTC (django.utils.timezone.utc is gone).
                expires_at = timezone.make_aware(expires_at, timezone.get_fixed_timezone(0))
        rows[(address, row.get("esp", ""))] = {
            "reason": reason,
            "expires_at": expires_at,
            "note": row.get("note", ""),
        }
    if result.errors or dry_run:
        if dry_run and not result.errors:
            existing = _existing_suppressions(rows)
            result.updated = len(existing)
            result.created = len(rows) - len(existing)
        return result
    with transaction.atomic():
        existing = _existing_suppressions(rows)
        for (address, esp), values in rows.items():
            Suppression.objects.update_or_create(
                address=address,
                esp=esp,
                defaults={**values, "source": source, "created_by": created_by},
            )
        result.updated = len(existing)
        result.created = len(rows) - len(existing)
    return result


def _csv_records(reader: Any, errors: list[tuple[int, str]]) -> Iterator[dict]:
    """reader's records; malformed CSV (say a NUL byte or a huge field) ends them with an error."""
    import csv

    try:
        yield from reader
    except csv.Error as error:
        # The DictReader's own line_num only moves on good rows; its reader's is exact.
        errors.append((reader.reader.line_num, f"Not valid CSV: {error}"))


def _existing_suppressions(rows: dict[tuple[str, str], dict]) -> set[tuple[str, str]]:
    addresses = {address for address, _ in rows}
    return {
        pair
        for pair in Suppression.objects.filter(address__in=addresses).values_list("address", "esp")
        if pair in rows
    }


def suppressions_export_csv(*, suppressions: Iterable[Suppression], out: Any) -> int:
    """Write suppressions as CSV (the import format) to the text stream out; return rows."""
    import csv

    writer = csv.writer(out)
    writer.writerow([*SUPPRESSION_CSV_COLUMNS, "source", "created_at"])
    count = 0
    for suppression in suppressions:
        writer.writerow(
            [
                suppression.address,
                suppression.reason,
                suppression.esp,
                suppression.expires_at.isoformat() if suppression.expires_at else "",
                suppression.note,
                suppression.source,
                suppression.created_at.isoformat(),
            ]
        )
        count += 1
    return count


def suppression_expire(*, suppression: Suppression, when: datetime | None = None) -> None:
    """End a suppression (now, or at when) without deleting its history."""
    suppression.expires_at = when or timezone.now()
    suppression.save(update_fields=["expires_at"])


# ---------------------------------------------------------------------------
# Erasure ("forget me" requests)

#: What a forgotten address or content is replaced with.
FORGOTTEN = "[forgotten]"


def recipient_forget(*, address: str, keep_suppression: bool = True) -> dict[str, int]:
    """Remove address, and the content of the messages it took part in, from the records.

    Recipient rows for address lose it (and their display name). Every
    message it was sent to, or that had it as reply-to, has the address
    redacted from to/cc/bcc/reply_to, its own entries dropped from
    merge_data, merge_metadata and merge_headers, and its subject and bodies
    replaced with "[forgotten]"; such a message is marked as stored without
    content, so it can't be resent. Their attachments' files are deleted once
    the transaction commits, unless another message still uses them.
    Suppressions of address are deleted unless keep_suppression (keeping
    them is how "never mail me again" is honoured). Tags and metadata stay:
    they're the sending application's identifiers.

    Returns counts: recipients, messages, attachments, attachment_files,
    suppressions.
    """
    from functools import partial

    normalized = normalize_address(address)
    if "@" not in normalized:
        raise ValueError(f"Not an email address: {address!r}")
    now = timezone.now()
    with transaction.atomic():
        message_ids = set(
            Recipient.objects.filter(address=normalized).values_list("message_id", flat=True)
        )
        # reply_to isn't indexed: a text match finds candidates, parsing confirms.
        candidates = Message.objects.filter(reply_to__icontains=normalized).exclude(
            pk__in=message_ids
        )
        for pk, reply_to in candidates.values_list("pk", "reply_to"):
            if any(_is_address(entry, normalized) for entry in reply_to or []):
                message_ids.add(pk)

        ordered_ids = sorted(message_ids)
        file_names: set[str] = set()
        attachments = 0
        for start in range(0, len(ordered_ids), 500):
            batch = ordered_ids[start : start + 500]
            messages = list(Message.objects.filter(pk__in=batch))
            for message in messages:
                _forget_in_message(message, normalized, now)
            Message.objects.bulk_update(messages, _FORGOTTEN_MESSAGE_FIELDS)
            stored = StoredAttachment.objects.filter(message_id__in=batch)
            file_names.update(name for name in stored.values_list("file", flat=True) if name)
            attachments += stored.update(file="", filename=FORGOTTEN)

        recipients = Recipient.objects.filter(address=normalized).update(
            address=FORGOTTEN, display_name=""
        )
        still_used = set(
            StoredAttachment.objects.filter(file__in=file_names).values_list("file", flat=True)
        )
        orphaned = sorted(file_names - still_used)
        if orphaned:
            transaction.on_commit(
                partial(delete_unreferenced_files, orphaned, [(StoredAttachment, "file")])
            )
        suppressions = 0
        if not keep_suppression:
            suppressions, _ = Suppression.objects.filter(address=normalized).delete()
    return {
        "recipients": recipients,
        "messages": len(message_ids),
        "attachments": attachments,
        "attachment_files": len(orphaned),
        "suppressions": suppressions,
    }


#: The Message fields recipient_forget rewrites (see _forget_in_message).
_FORGOTTEN_MESSAGE_FIELDS = (
    "to",
    "cc",
    "bcc",
    "reply_to",
    "subject",
    "body",
    "alternatives",
    "extra_headers",
    "merge_data",
    "merge_metadata",
    "merge_headers",
    "error",
    "content_stored",
    "updated_at",
)


def _is_address(entry: str, normalized: str) -> bool:
    from email.utils import parseaddr

    return normalize_address(parseaddr(str(entry))[1]) == normalized


def _scrub(text: str, normalized: str) -> str:
    """text with every (case-insensitive) occurrence of the address redacted."""
    import re

    if not text or normalized not in text.lower():
        return text
    return re.sub(re.escape(normalized), FORGOTTEN, text, flags=re.IGNORECASE)


def _forget_in_message(message: Message, normalized: str, now: datetime) -> None:
    for name in ("to", "cc", "bcc", "reply_to"):
        entries = getattr(message, name) or []
        setattr(
            message,
            name,
            [FORGOTTEN if _is_address(entry, normalized) else entry for entry in entries],
        )
    for name in ("merge_data", "merge_metadata", "merge_headers"):
        value = getattr(message, name)
        if isinstance(value, dict):
            setattr(
                message,
                name,
                {key: data for key, data in value.items() if not _is_address(key, normalized)},
            )
    message.extra_headers = {
        key: _scrub(str(value), normalized) for key, value in (message.extra_headers or {}).items()
    }
    message.subject = FORGOTTEN
    message.body = FORGOTTEN
    message.alternatives = [[FORGOTTEN, mimetype] for _, mimetype in message.alternatives or []]
    message.error = _scrub(message.error, normalized)
    message.content_stored = False
    message.updated_at = now


# ---------------------------------------------------------------------------
# Retention (manage.py purge)


def messages_purge_content(
    *,
    before: datetime,
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Blank the bodies, alternatives and attachment files of messages created before `before`.

    The Message, Recipient and attachment rows stay (addresses, statuses,
    counts, attachment names and sizes), marked content_stored=False, so
    they can no longer be resent. Return how many messages were (or, with
    dry_run, would be) purged.
    """
    messages = Message.objects.filter(created_at__lt=before, content_stored=True)
    if dry_run:
        return messages.count()
    purged = 0
    for batch in pk_batches(messages, batch_size):
        with transaction.atomic():
            Message.objects.filter(pk__in=batch).update(
                body="", alternatives=[], content_stored=False, updated_at=timezone.now()
            )
            attachments = StoredAttachment.objects.filter(message_id__in=batch).exclude(file="")
            names = set(attachments.values_list("file", flat=True))
            attachments.update(file="")
            if names:
                transaction.on_commit(
                    partial(delete_unreferenced_files, names, [(StoredAttachment, "file")])
                )
        purged += len(batch)
        if on_batch:
            on_batch(len(batch))
    return purged


def messages_purge(
    *,
    before: datetime,
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete messages created before `before`, with their recipients and attachments.

    Their tracking events stay, unlinked (the events' own retention removes
    them). Return how many messages were (or would be) deleted.
    """
    messages = Message.objects.filter(created_at__lt=before)
    if dry_run:
        return messages.count()
    deleted = 0
    for batch in pk_batches(messages, batch_size):
        _messages_delete(batch)
        deleted += len(batch)
        if on_batch:
            on_batch(len(batch))
    return deleted
