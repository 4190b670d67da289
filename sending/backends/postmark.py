"""Postmark: send through Postmark's email API.

Four endpoints, chosen by the message (all JSON, all authenticated by the
``X-Postmark-Server-Token`` header):

- ``POST /email``: one message, every recipient on it;
- ``POST /email/batch``: a JSON list of messages, one per "to" recipient,
  when the message has merge_data, merge_metadata or merge_headers;
- ``POST /email/withTemplate`` and ``POST /email/batchWithTemplates``
  (``{"Messages": [...]}``): the same two with a stored template, chosen by
  ``template_id`` and filled from ``merge_global_data`` + ``merge_data``.

Reference: https://postmarkapp.com/developer/api/email-api,
https://postmarkapp.com/developer/api/templates-api and
https://postmarkapp.com/developer/api/overview (error codes).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..message import AnymailRecipientStatus
from ..utils import CaseInsensitiveDict, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.postmarkapp.com/"

# Postmark's API error codes (the "ErrorCode" in every response body).
# 300 is the catch-all "Invalid email request": a bad address, but also a
# missing body, more than 50 recipients or an unverified From.
INVALID_EMAIL_REQUEST = 300
INACTIVE_RECIPIENT = 406

# Postmark's error text names the recipient field it refused:
# "Invalid 'To' address: 'bad..dots@example.com'." or
# "Error parsing 'Cc': Illegal email address 'x'. It must contain the '@' symbol."
RECIPIENT_FIELD_ERROR = re.compile(r"'(To|Cc|Bcc)'")
# Inactive addresses are listed after this phrase, both in the 406 error
# ("... Found inactive addresses: a@example.com. Inactive recipients are ...")
# and in the OK answer of a send that skipped some recipients
# ("Message OK, but will not deliver to these inactive addresses: a@example.com").
INACTIVE_ADDRESSES = re.compile(r"inactive addresses:(.*)", re.IGNORECASE | re.DOTALL)
ADDRESS_IN_TEXT = re.compile(r"[^\s,;<>'\"]+@[^\s,;<>'\"]+")


def postmark_error_code(response: requests.Response) -> int | None:
    """Return the ErrorCode of a Postmark error response, if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("ErrorCode") if isinstance(body, dict) else None


def addresses_in(text: str) -> set[str]:
    """Return the addresses quoted in Postmark's text, lowercased."""
    # An address may end a sentence and carry its full stop.
    return {address.rstrip(".").lower() for address in ADDRESS_IN_TEXT.findall(text)}


def inactive_addresses(text: str) -> set[str]:
    """Return the addresses Postmark's text lists as inactive, lowercased."""
    match = INACTIVE_ADDRESSES.search(text)
    return addresses_in(match.group(1)) if match else set()


class PostmarkPayload(RequestsPayload):
    """A message as Postmark's email API wants it."""

    feature_limits = {
        "tags": "one tag per message",
        "merge_data": "only with a stored template (template_id)",
        "merge_global_data": "only with a stored template (template_id)",
    }

    def __init__(
        self,
        message: EmailMessage,
        defaults: dict,
        backend: EmailBackend,
        suppressed: set[str] = frozenset(),
        *args: Any,
        **kwargs: Any,
    ) -> None:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "X-Postmark-Server-Token": backend.server_token,
        }
        super().__init__(message, defaults, backend, suppressed, *args, headers=headers, **kwargs)
        # Postmark substitutes variables only in stored templates: without
        # one, merge data would be silently dropped.
        has_merge_data = self.merge_global_data or any((self.merge_data or {}).values())
        if has_merge_data and self.template_id is None:
            self.unsupported_feature("merge_data without template_id")

    @property
    def batch_to(self) -> list[EmailAddress]:
        """The "to" recipients that each get their own message ([] for one message)."""
        return self.recipients_by_kind["to"] if self.is_batch() else []

    def get_api_endpoint(self) -> str:
        if self.template_id is not None:
            return "email/batchWithTemplates" if self.batch_to else "email/withTemplate"
        return "email/batch" if self.batch_to else "email"

    def serialize_data(self) -> str:
        if not self.batch_to:
            return self.serialize_json(self.build_message())
        messages = [self.build_message(to) for to in self.batch_to]
        if self.template_id is not None:
            return self.serialize_json({"Messages": messages})
        return self.serialize_json(messages)

    def build_message(self, to: EmailAddress | None = None) -> dict[str, Any]:
        """Return one Postmark message: the shared fields, plus to's own in a batch."""
        message = copy.deepcopy(self.data)
        headers = CaseInsensitiveDict(self.extra_headers)
        template_model = dict(self.merge_global_data or {})
        if to is not None:
            message["To"] = to.address
            metadata = self.data.get("Metadata", {}) | self.merge_metadata.get(to.addr_spec, {})
            if metadata:
                message["Metadata"] = metadata
            headers.update(self.merge_headers.get(to.addr_spec, {}))
            template_model.update((self.merge_data or {}).get(to.addr_spec, {}))
        if headers:
            message["Headers"] = [{"Name": name, "Value": value} for name, value in headers.items()]
        if self.template_id is not None:
            key = "TemplateId" if isinstance(self.template_id, int) else "TemplateAlias"
            message[key] = self.template_id
            message["TemplateModel"] = template_model  # required, even if empty
        update_deep(message, copy.deepcopy(self.esp_extra))
        return message

    # Setters: fields shared by every message go in self.data; what varies
    # per recipient is kept apart and assembled in build_message.

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}
        self.extra_headers: dict[str, str] = {}
        self.template_id: int | str | None = None
        self.merge_data: dict | None = None
        self.merge_global_data: dict | None = None
        self.merge_metadata: dict = {}
        self.merge_headers: dict = {}
        self.esp_extra: dict = {}

    def set_from_email(self, email: EmailAddress) -> None:
        self.data["From"] = email.address

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        # Comma-separated, at most 50 recipients in To, Cc and Bcc together
        # (Postmark answers ErrorCode 300 beyond that).
        if emails:
            field = recipient_type.capitalize()  # "To", "Cc", "Bcc"
            self.data[field] = ", ".join(email.address for email in emails)

    def set_subject(self, subject: str) -> None:
        self.data["Subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if emails:
            self.data["ReplyTo"] = ", ".join(email.address for email in emails)

    def set_extra_headers(self, headers: dict) -> None:
        self.extra_headers = headers

    def set_text_body(self, body: str) -> None:
        self.data["TextBody"] = body

    def set_html_body(self, body: str) -> None:
        self.data["HtmlBody"] = body

    def add_attachment(self, attachment: Any) -> None:
        item = {
            "Name": attachment.name or "",
            "Content": attachment.b64content,
            "ContentType": attachment.mimetype,
        }
        if attachment.inline:
            # Postmark wants the cid: URL form, as used in the html's <img src>
            item["ContentID"] = f"cid:{attachment.cid}"
            item["Name"] = attachment.name or attachment.cid
        self.data.setdefault("Attachments", []).append(item)

    def set_metadata(self, metadata: dict) -> None:
        if metadata:
            self.data["Metadata"] = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_tags(self, tags: list) -> None:
        if len(tags) > 1:
            self.unsupported_feature("multiple tags")
        if tags:
            self.data["Tag"] = tags[0]  # the first, when IGNORE_UNSUPPORTED_FEATURES

    def set_track_clicks(self, track_clicks: bool) -> None:
        # Postmark also has "HtmlOnly" and "TextOnly": use esp_extra for those.
        self.data["TrackLinks"] = "HtmlAndText" if track_clicks else "None"

    def set_track_opens(self, track_opens: bool) -> None:
        self.data["TrackOpens"] = bool(track_opens)

    def set_template_id(self, template_id: Any) -> None:
        if template_id == "":
            return  # no template
        # A numeric TemplateId or a string TemplateAlias. A string of digits
        # is an id: that is how a stored (and resent) message gives it back.
        if isinstance(template_id, int) or str(template_id).isdigit():
            self.template_id = int(template_id)
        else:
            self.template_id = str(template_id)
        # The template renders Subject, HtmlBody and TextBody. Django's empty
        # defaults are dropped; real content can't override the template.
        for field in ("Subject", "TextBody", "HtmlBody"):
            if self.data.pop(field, ""):
                self.unsupported_feature("overriding a template's subject or body")

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        # Merged (deeply) into every message sent, e.g. {"MessageStream": "broadcast"}.
        # Without MessageStream Postmark uses the server's default "outbound" stream.
        self.esp_extra = extra


class EmailBackend(AnymailRequestsBackend):
    """Send email through Postmark's HTTP API."""

    esp_name = "Postmark"
    payload_class = PostmarkPayload
    required_settings = ("SERVER_TOKEN",)
    optional_settings = ("API_URL",)

    def __init__(self, **kwargs: Any) -> None:
        esp_name = self.esp_setting_prefix
        self.server_token = get_anymail_setting(
            "server_token", esp_name=esp_name, kwargs=kwargs, allow_bare=True
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=esp_name, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"  # endpoints are joined relative to it
        super().__init__(api_url, **kwargs)

    def raise_for_status(
        self, response: requests.Response, payload: PostmarkPayload, message: EmailMessage
    ) -> None:
        # A single send whose every recipient is inactive (hard bounced,
        # complained or manually suppressed) is refused with HTTP 422 and
        # ErrorCode 406 "You tried to send to recipient(s) that have been
        # marked as inactive. Found inactive addresses: ...". That is a fact
        # about the recipients, not a fault in the request: report them as
        # "rejected" (as the batch endpoints and the partly-inactive OK answer
        # do), so the pipeline raises AnymailRecipientsRefused and records why.
        if (
            response.status_code == 422
            and not payload.batch_to
            and postmark_error_code(response) == INACTIVE_RECIPIENT
        ):
            return
        super().raise_for_status(response, payload, message)

    def parse_recipient_status(
        self, response: requests.Response, payload: PostmarkPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        parsed = self.deserialize_json_response(response, payload, message)
        if not payload.batch_to:
            if not isinstance(parsed, dict):
                raise self._unexpected(response, payload, message)
            code, text = parsed.get("ErrorCode"), str(parsed.get("Message") or "")
            if code not in (0, INACTIVE_RECIPIENT):
                # An error in a 2xx answer: not documented, but never "sent"
                raise AnymailRequestsAPIError(
                    f"Postmark refused the message: {text}",
                    email_message=message,
                    payload=payload,
                    response=response,
                    backend=self,
                )
            return self._message_status(parsed, payload.all_recipients)

        # The batch endpoints answer 200 with one result per message, in the
        # order sent; each message can fail on its own.
        if (
            not isinstance(parsed, list)
            or len(parsed) != len(payload.batch_to)
            or not all(isinstance(result, dict) for result in parsed)
        ):
            raise self._unexpected(response, payload, message)
        if not any(result.get("ErrorCode") == 0 for result in parsed):
            failures = [result for result in parsed if not self._is_recipient_error(result)]
            if failures:
                # Every message failed, and not because of its recipients (an
                # unverified From, a missing body...): the send as a whole failed,
                # as it would have as a single message.
                raise AnymailRequestsAPIError(
                    f"Postmark refused every message in the batch: {failures[0].get('Message')}",
                    email_message=message,
                    payload=payload,
                    response=response,
                    backend=self,
                )

        statuses: dict[str, AnymailRecipientStatus] = {}
        shared = payload.recipients_by_kind["cc"] + payload.recipients_by_kind["bcc"]
        for to, result in zip(payload.batch_to, parsed, strict=True):
            for addr_spec, status in self._message_status(result, [to, *shared]).items():
                # Cc and bcc recipients get a copy of every message: they are
                # sent to if any copy was.
                if addr_spec not in statuses or statuses[addr_spec].status != "sent":
                    statuses[addr_spec] = status
        return statuses

    @staticmethod
    def _is_recipient_error(result: dict) -> bool:
        code = result.get("ErrorCode")
        return code == INACTIVE_RECIPIENT or (
            code == INVALID_EMAIL_REQUEST
            and RECIPIENT_FIELD_ERROR.search(str(result.get("Message") or "")) is not None
        )

    def _message_status(
        self, result: dict, recipients: list[EmailAddress]
    ) -> dict[str, AnymailRecipientStatus]:
        """Return the status of each of one Postmark message's recipients."""
        code, text = result.get("ErrorCode"), str(result.get("Message") or "")
        if code == 0:
            # One MessageID for the message, shared by all its recipients;
            # inactive ones are skipped ("Message OK, but will not deliver to
            # these inactive addresses: ...").
            message_id = result.get("MessageID")
            inactive = inactive_addresses(text)
            return {
                address.addr_spec: (
                    AnymailRecipientStatus(message_id=None, status="rejected")
                    if address.addr_spec.lower() in inactive
                    else AnymailRecipientStatus(message_id=message_id, status="sent")
                )
                for address in recipients
            }
        if code == INACTIVE_RECIPIENT:
            # Postmark refuses a message only when all its recipients are inactive
            return self._all(recipients, "rejected")
        if not self._is_recipient_error(result):
            return self._all(recipients, "failed")
        # Postmark refused the whole message for the address it quotes: that
        # one is invalid, and the message's other recipients (a batch's cc and
        # bcc) were refused along with it.
        named = addresses_in(text)
        if not named.intersection(address.addr_spec.lower() for address in recipients):
            return self._all(recipients, "invalid")
        return {
            address.addr_spec: AnymailRecipientStatus(
                message_id=None,
                status="invalid" if address.addr_spec.lower() in named else "rejected",
            )
            for address in recipients
        }

    @staticmethod
    def _all(recipients: list[EmailAddress], status: str) -> dict[str, AnymailRecipientStatus]:
        return {
            address.addr_spec: AnymailRecipientStatus(message_id=None, status=status)
            for address in recipients
        }

    def _unexpected(
        self, response: requests.Response, payload: PostmarkPayload, message: EmailMessage
    ) -> AnymailRequestsAPIError:
        return AnymailRequestsAPIError(
            "Unexpected Postmark API response shape",
            email_message=message,
            payload=payload,
            response=response,
            backend=self,
        )
