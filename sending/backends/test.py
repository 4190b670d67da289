"""A backend for tests: records what would be sent, calls no ESP.

Each sent message is appended to ``django.core.mail.outbox`` (like Django's
locmem backend) and gets ``anymail_send_params``: the normalized parameters
the message would be sent with, send defaults included. Every recipient is
``sent`` with one generated message id, unless the test sets
``message.test_response`` to an ``AnymailRecipientStatus`` dict or to an
exception to raise.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core import mail
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailAPIError
from ..message import AnymailRecipientStatus
from .base import AnymailBaseBackend, BasePayload


class EmailBackend(AnymailBaseBackend):
    """Anymail-style test backend."""

    esp_name = "Test"
    payload_class = None  # set below, once TestPayload is defined

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(mail, "outbox"):
            mail.outbox = []

    def post_to_esp(self, payload: TestPayload, message: EmailMessage) -> dict:
        try:
            mail.outbox.append(message)
        except AttributeError:
            mail.outbox = [message]  # outbox was deleted by a test
        message.anymail_send_params = payload.params
        response = getattr(message, "test_response", None)
        if isinstance(response, BaseException):
            raise response
        return response or {"message_id": str(uuid.uuid4())}

    def parse_recipient_status(
        self, response: Any, payload: TestPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        if isinstance(response, dict) and "recipients" in response:
            return response["recipients"]
        try:
            message_id = response["message_id"]
        except (KeyError, TypeError) as err:
            raise AnymailAPIError("Unparsable test response", backend=self) from err
        return {
            address.addr_spec: AnymailRecipientStatus(message_id=message_id, status="sent")
            for address in payload.all_recipients
        }


class TestPayload(BasePayload):
    """Collects every attribute into ``params``; supports every feature."""

    def init_payload(self) -> None:
        self.params: dict[str, Any] = {}

    def set_from_email(self, email):
        self.params["from"] = email

    def set_to(self, emails):
        self.params["to"] = emails

    def set_cc(self, emails):
        self.params["cc"] = emails

    def set_bcc(self, emails):
        self.params["bcc"] = emails

    def set_subject(self, subject):
        self.params["subject"] = subject

    def set_reply_to(self, emails):
        self.params["reply_to"] = emails

    def set_extra_headers(self, headers):
        self.params["extra_headers"] = headers

    def set_text_body(self, body):
        self.params["text_body"] = body

    def set_html_body(self, body):
        self.params["html_body"] = body

    def set_amp_body(self, body):
        self.params["amp_body"] = body

    def add_alternative(self, content, mimetype):
        if mimetype in ("text/html", "text/x-amp-html"):
            super().add_alternative(content, mimetype)
        else:
            self.params.setdefault("alternatives", []).append((content, mimetype))

    def add_attachment(self, attachment):
        self.params.setdefault("attachments", []).append(attachment)

    def set_envelope_sender(self, email):
        self.params["envelope_sender"] = email.addr_spec

    def set_metadata(self, metadata):
        self.params["metadata"] = metadata

    def set_merge_metadata(self, merge_metadata):
        self.params["merge_metadata"] = merge_metadata

    def set_merge_headers(self, merge_headers):
        self.params["merge_headers"] = merge_headers

    def set_send_at(self, send_at):
        self.params["send_at"] = send_at

    def set_tags(self, tags):
        self.params["tags"] = tags

    def set_track_clicks(self, track_clicks):
        self.params["track_clicks"] = track_clicks

    def set_track_opens(self, track_opens):
        self.params["track_opens"] = track_opens

    def set_template_id(self, template_id):
        self.params["template_id"] = template_id

    def set_merge_data(self, merge_data):
        self.params["merge_data"] = merge_data

    def set_merge_global_data(self, merge_global_data):
        self.params["merge_global_data"] = merge_global_data

    def set_esp_extra(self, extra):
        self.params["esp_extra"] = extra

    def set_idempotency_key(self, key):
        self.params["idempotency_key"] = key


EmailBackend.payload_class = TestPayload
