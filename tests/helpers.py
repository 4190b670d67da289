"""Assertions shared by the per-ESP backend tests."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from sending.models import Message


def recorded_message(email_message=None) -> Message:
    """The one Message row recorded (the latest, if several), with its recipients."""
    record = Message.objects.order_by("-id").prefetch_related("recipients").first()
    assert record is not None, "no Message was recorded"
    return record


def assert_recorded(
    *,
    status: str,
    esp: str,
    recipients: dict[str, tuple[str, str]] | None = None,
    error_contains: str | None = None,
) -> Message:
    """Assert the latest Message's status, ESP and recipients.

    recipients maps normalized address -> (send_status, esp_message_id).
    """
    record = recorded_message()
    assert record.status == status, f"Message.status is {record.status!r}, error={record.error!r}"
    assert record.esp == esp
    if recipients is not None:
        actual = {r.address: (r.send_status, r.esp_message_id) for r in record.recipients.all()}
        assert actual == recipients
    if error_contains is not None:
        assert error_contains in record.error, record.error
    return record


def request_json(call) -> dict:
    """The JSON body of a responses call."""
    body = call.request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return json.loads(body)


def request_form(call) -> list[tuple[str, str]]:
    """The urlencoded body of a responses call, as ordered (name, value) pairs."""
    body = call.request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    return parse_qsl(body, keep_blank_values=True)


def request_multipart(call) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, bytes]]]:
    """Decode a multipart/form-data request body.

    Returns (fields, files): fields as ordered (name, value) pairs; files as
    (field name, filename, content type, content bytes).
    """
    from email.parser import BytesParser
    from email.policy import HTTP

    content_type = call.request.headers["Content-Type"]
    body = call.request.body
    if isinstance(body, str):
        body = body.encode("utf-8")
    parsed = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("ascii") + b"\r\n\r\n" + body
    )
    fields, files = [], []
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        content = part.get_payload(decode=True)
        if filename is None:
            fields.append((name, content.decode(part.get_content_charset() or "utf-8")))
        else:
            files.append((name, filename, part.get_content_type(), content))
    return fields, files
