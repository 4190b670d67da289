"""Mailjet: transactional sending through the Send API v3.1.

One POST to ``<MAILJET_API_URL>send`` with HTTP basic auth (API key and
secret key) and a JSON body ``{"Messages": [...]}``. A normal send is one
entry in ``Messages``; a batch send (merge_data, merge_metadata or
merge_headers) is one entry per "to" recipient, each with its own
``Variables``, ``EventPayload`` and ``Headers``.

Mailjet checks each entry of ``Messages`` on its own and answers HTTP 400
when any of them fails, even if others were accepted. mailhub raises
AnymailAPIError only when no entry was accepted; otherwise the recipients of
a refused entry get status "invalid" (Mailjet's "mj-0013" invalid address)
or "failed", and the rest "sent".

Reference: https://dev.mailjet.com/email/guides/send-api-v31/ and
https://dev.mailjet.com/email/reference/send-emails/
"""

from __future__ import annotations

import copy
import mimetypes
from typing import Any

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError, AnymailUnsupportedFeature
from ..message import AnymailRecipientStatus
from ..utils import Attachment, EmailAddress, get_anymail_setting, update_deep
from .base_requests import AnymailRequestsBackend, RequestsPayload

DEFAULT_API_URL = "https://api.mailjet.com/v3.1/"

# Send API properties of the request itself rather than of one message; any
# other esp_extra key is a message property and goes into every message.
TOP_LEVEL_PROPERTIES = frozenset({"SandboxMode", "AdvanceErrorHandling", "Globals"})

# "ErrorCode": "mj-0013", "ErrorMessage": "\"x\" is an invalid email address."
INVALID_ADDRESS_ERROR = "mj-0013"

RECIPIENT_FIELDS = {"to": "To", "cc": "Cc", "bcc": "Bcc"}


class MailjetPayload(RequestsPayload):
    """Builds a Send API v3.1 request."""

    feature_limits = {
        "tags": "one tag per message (sent as Mailjet's CustomCampaign)",
        "reply_to": "one address",
        "envelope_sender": "sent as Mailjet's Sender, which the account must be allowed to use",
        "template_id": "numeric Mailjet template ID",
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
        super().__init__(
            message,
            defaults,
            backend,
            suppressed,
            *args,
            headers={"Content-Type": "application/json"},
            auth=(backend.api_key, backend.secret_key),
            **kwargs,
        )

    def get_api_endpoint(self) -> str:
        return "send"

    def init_payload(self) -> None:
        self.data: dict[str, Any] = {}  # top-level properties (SandboxMode, ...)
        self.message_data: dict[str, Any] = {}  # properties shared by every message
        self.recipients: dict[str, list[EmailAddress]] = {"To": [], "Cc": [], "Bcc": []}
        self.metadata: dict | None = None
        self.merge_metadata: dict = {}
        self.merge_headers: dict = {}
        self.merge_data: dict = {}
        self.merge_global_data: dict | None = None
        self.message_extra: dict = {}
        #: The Messages entries sent, in order (matched to Mailjet's results by position).
        self.messages: list[dict[str, Any]] = []

    def serialize_data(self) -> str:
        if self.is_batch() and self.recipients["To"]:
            self.messages = [self.build_message([to]) for to in self.recipients["To"]]
        else:
            self.messages = [self.build_message(self.recipients["To"])]
        return self.serialize_json({"Messages": self.messages, **self.data})

    def build_message(self, to: list[EmailAddress]) -> dict[str, Any]:
        """One Messages entry: the shared properties plus to's own data."""
        message = copy.deepcopy(self.message_data)
        if to:
            message["To"] = [self.mailjet_address(address) for address in to]
        for field in ("Cc", "Bcc"):
            if self.recipients[field]:
                message[field] = [self.mailjet_address(cc) for cc in self.recipients[field]]

        # In a batch, each message has exactly one "to"; its per-recipient data applies.
        addr_spec = to[0].addr_spec if self.is_batch() and to else None

        variables = {**(self.merge_global_data or {}), **self.merge_data.get(addr_spec, {})}
        if variables:
            message["Variables"] = variables

        if self.metadata is not None or addr_spec in self.merge_metadata:
            metadata = {**(self.metadata or {}), **self.merge_metadata.get(addr_spec, {})}
            # Mailjet returns EventPayload verbatim as "Payload" in tracking events.
            message["EventPayload"] = self.serialize_json(metadata)

        if addr_spec in self.merge_headers:
            message["Headers"] = {**message.get("Headers", {}), **self.merge_headers[addr_spec]}

        update_deep(message, copy.deepcopy(self.message_extra))
        return message

    @staticmethod
    def mailjet_address(address: EmailAddress) -> dict[str, str]:
        # v3.1 takes the display name as its own field, so commas and
        # non-ASCII names need no encoding (unlike v3's "Name <addr>" strings).
        if address.display_name:
            return {"Email": address.addr_spec, "Name": address.display_name}
        return {"Email": address.addr_spec}

    # Setters

    def set_from_email(self, email: EmailAddress) -> None:
        self.message_data["From"] = self.mailjet_address(email)

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        self.recipients[RECIPIENT_FIELDS[recipient_type]] = list(emails)

    def set_subject(self, subject: str) -> None:
        self.message_data["Subject"] = subject

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if len(emails) > 1:
            self.unsupported_feature("multiple reply_to addresses")
        if emails:
            self.message_data["ReplyTo"] = self.mailjet_address(emails[0])

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.message_data["Headers"] = dict(headers)

    def set_text_body(self, body: str) -> None:
        self.message_data["TextPart"] = body

    def set_html_body(self, body: str) -> None:
        self.message_data["HTMLPart"] = body

    def add_attachment(self, attachment: Attachment) -> None:
        # Mailjet refuses an empty Filename ("mj-0012"), which inline images
        # often have: give those a generic name of the right type.
        filename = attachment.name or "attachment" + (
            mimetypes.guess_extension(attachment.mimetype) or ""
        )
        mailjet_attachment = {
            "ContentType": attachment.mimetype,
            "Filename": filename,
            "Base64Content": attachment.b64content,
        }
        if attachment.inline:
            mailjet_attachment["ContentID"] = attachment.cid
            self.message_data.setdefault("InlinedAttachments", []).append(mailjet_attachment)
        else:
            self.message_data.setdefault("Attachments", []).append(mailjet_attachment)

    def set_envelope_sender(self, email: EmailAddress) -> None:
        # Mailjet's closest equivalent is the Sender property. Unless Mailjet
        # support has enabled it for the API key, Mailjet answers 403
        # "send-0006": "the API key doesn't have permission to use a Sender header".
        self.message_data["Sender"] = self.mailjet_address(email)

    def set_metadata(self, metadata: dict) -> None:
        self.metadata = metadata

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.merge_metadata = merge_metadata

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.merge_headers = merge_headers

    def set_tags(self, tags: list) -> None:
        # Mailjet groups messages in a single campaign (X-Mailjet-Campaign).
        if len(tags) > 1:
            self.unsupported_feature("multiple tags")
        if tags:
            self.message_data["CustomCampaign"] = tags[0]

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.message_data["TrackClicks"] = "enabled" if track_clicks else "disabled"

    def set_track_opens(self, track_opens: bool) -> None:
        self.message_data["TrackOpens"] = "enabled" if track_opens else "disabled"

    def set_template_id(self, template_id: Any) -> None:
        try:
            self.message_data["TemplateID"] = int(template_id)
        except (TypeError, ValueError):
            raise AnymailUnsupportedFeature(
                f"Mailjet template_id must be the numeric template ID, not {template_id!r}",
                email_message=self.message,
                payload=self,
                backend=self.backend,
            ) from None
        self.message_data["TemplateLanguage"] = True
        # Django's default empty subject and body would override the
        # template's ("send-0004": duplicated content); leave them out.
        for field in ("Subject", "TextPart", "HTMLPart"):
            if self.message_data.get(field) == "":
                del self.message_data[field]

    def set_merge_data(self, merge_data: dict) -> None:
        self.merge_data = merge_data

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.merge_global_data = merge_global_data

    def set_esp_extra(self, extra: dict) -> None:
        for key, value in extra.items():
            if key in TOP_LEVEL_PROPERTIES:
                self.data[key] = value
            else:
                self.message_extra[key] = value


class EmailBackend(AnymailRequestsBackend):
    """Send through Mailjet's Send API v3.1."""

    esp_name = "Mailjet"
    payload_class = MailjetPayload
    required_settings = ("API_KEY", "SECRET_KEY")
    optional_settings = ("API_URL",)

    def __init__(self, **kwargs: Any) -> None:
        prefix = self.esp_setting_prefix
        self.api_key = get_anymail_setting(
            "api_key", esp_name=prefix, kwargs=kwargs, allow_bare=True
        )
        self.secret_key = get_anymail_setting(
            "secret_key", esp_name=prefix, kwargs=kwargs, allow_bare=True
        )
        api_url = get_anymail_setting(
            "api_url", esp_name=prefix, kwargs=kwargs, default=DEFAULT_API_URL
        )
        if not api_url.endswith("/"):
            api_url += "/"
        super().__init__(api_url, **kwargs)

    def raise_for_status(
        self, response: requests.Response, payload: MailjetPayload, message: EmailMessage
    ) -> None:
        if 200 <= response.status_code <= 299:
            return
        results = self.message_results(response)
        if any(result.get("Status") == "success" for result in results):
            return  # some messages were accepted: parse_recipient_status reports the rest
        raise AnymailRequestsAPIError(
            *self.describe_errors(response, results),
            email_message=message,
            payload=payload,
            response=response,
            backend=self,
        )

    @staticmethod
    def message_results(response: requests.Response) -> list[dict]:
        """The per-message results in a Send API answer ([] if it has none)."""
        try:
            results = response.json()["Messages"]
        except (ValueError, KeyError, TypeError):
            return []
        if not isinstance(results, list):
            return []
        return [result for result in results if isinstance(result, dict)]

    @staticmethod
    def describe_errors(response: requests.Response, results: list[dict]) -> list[str]:
        """Mailjet's error messages, one line each, to lead the exception text."""
        errors = [
            error
            for result in results
            for error in result.get("Errors") or []
            if isinstance(error, dict)
        ]
        if not errors:
            try:
                body = response.json()
            except ValueError:
                return []
            # A request-level error: {"ErrorIdentifier", "StatusCode", "ErrorMessage"}
            errors = [body] if isinstance(body, dict) and "ErrorMessage" in body else []
        lines = []
        for error in errors:
            line = str(error.get("ErrorMessage", "Unknown error"))
            if error.get("ErrorCode"):
                line += f" [{error['ErrorCode']}]"
            if error.get("ErrorRelatedTo"):
                line += f" (related to {', '.join(map(str, error['ErrorRelatedTo']))})"
            lines.append(line)
        if not lines:
            return []
        return ["Mailjet API error:\n" + "\n".join(lines)]

    def parse_recipient_status(
        self, response: requests.Response, payload: MailjetPayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        data = self.deserialize_json_response(response, payload, message)
        try:
            results = data["Messages"]
            # By address, lowercased: Mailjet may not echo the case it was given.
            statuses: dict[str, AnymailRecipientStatus] = {}
            # Accepted messages first: in a batch, a cc gets a copy of every
            # message, and one accepted copy means it was sent.
            for result in results:
                if result["Status"] == "success":
                    for field in RECIPIENT_FIELDS.values():
                        for sent in result.get(field) or []:
                            statuses.setdefault(
                                sent["Email"].lower(),
                                AnymailRecipientStatus(str(sent["MessageID"]), "sent"),
                            )
            for position, result in enumerate(results):
                if result["Status"] != "success":
                    codes = {error.get("ErrorCode") for error in result.get("Errors") or []}
                    status = "invalid" if codes == {INVALID_ADDRESS_ERROR} else "failed"
                    sent_message = (
                        payload.messages[position] if position < len(payload.messages) else {}
                    )
                    for field in RECIPIENT_FIELDS.values():
                        for address in sent_message.get(field) or []:
                            statuses.setdefault(
                                address["Email"].lower(), AnymailRecipientStatus(None, status)
                            )
        except (KeyError, TypeError, AttributeError) as err:
            raise AnymailRequestsAPIError(
                "Invalid Mailjet API response format",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err

        unknown = AnymailRecipientStatus(None, "unknown")
        return {
            address.addr_spec: statuses.get(address.addr_spec.lower(), unknown)
            for address in payload.all_recipients
        }
