"""AnymailMessage, its mixin, send status, and the inline-image helpers."""

from __future__ import annotations

from email.mime.image import MIMEImage
from email.utils import make_msgid, unquote
from pathlib import Path
from typing import Any

from django.core.mail import EmailMessage, EmailMultiAlternatives

from .utils import UNSET

ANYMAIL_ATTRS = (
    "envelope_sender",
    "metadata",
    "merge_metadata",
    "merge_headers",
    "send_at",
    "tags",
    "track_clicks",
    "track_opens",
    "template_id",
    "merge_data",
    "merge_global_data",
    "esp_extra",
)


class AnymailMessageMixin(EmailMessage):
    """Add the Anymail attributes and helpers to an EmailMessage subclass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for attr in ANYMAIL_ATTRS:
            setattr(self, attr, kwargs.pop(attr, UNSET))
        self.anymail_status = AnymailStatus()
        super().__init__(*args, **kwargs)

    def attach_inline_image_file(
        self,
        path: str | Path,
        subtype: str | None = None,
        idstring: str = "img",
        domain: str | None = None,
    ) -> str:
        """Attach the image at path inline and return its Content-ID (without <>)."""
        return attach_inline_image_file(self, path, subtype, idstring, domain)

    def attach_inline_image(
        self,
        content: bytes,
        filename: str | None = None,
        subtype: str | None = None,
        idstring: str = "img",
        domain: str | None = None,
    ) -> str:
        """Attach image bytes inline and return its Content-ID (without <>)."""
        return attach_inline_image(self, content, filename, subtype, idstring, domain)


class AnymailMessage(AnymailMessageMixin, EmailMultiAlternatives):
    """An EmailMultiAlternatives with the Anymail attributes."""


def attach_inline_image_file(
    message: EmailMessage,
    path: str | Path,
    subtype: str | None = None,
    idstring: str = "img",
    domain: str | None = None,
) -> str:
    """Attach the image file at path to message inline; return its Content-ID."""
    path = Path(path)
    content = path.read_bytes()
    return attach_inline_image(message, content, path.name, subtype, idstring, domain)


def attach_inline_image(
    message: EmailMessage,
    content: bytes,
    filename: str | None = None,
    subtype: str | None = None,
    idstring: str = "img",
    domain: str | None = None,
) -> str:
    """Attach image content to message inline; return its Content-ID (no <>).

    Use the result as ``<img src="cid:...">`` in the html body. The domain
    defaults to "inline" rather than the local hostname: some ESPs confuse
    Content-ID and filename, and Gmail blocks "filenames" ending in ".com".
    """
    if domain is None:
        domain = "inline"
    content_id = make_msgid(idstring, domain)  # "<...>"
    image = MIMEImage(content, subtype) if subtype else MIMEImage(content)
    image.add_header("Content-Disposition", "inline", filename=filename)
    image.add_header("Content-ID", content_id)
    message.attach(image)
    return unquote(content_id)


# Send status


class AnymailRecipientStatus:
    """The ESP's status and message id for one recipient."""

    # The documented vocabulary, plus "suppressed" for recipients mailhub
    # dropped from the send because of the suppression list.
    ANYMAIL_STATUSES = ("sent", "queued", "invalid", "rejected", "failed", "unknown", "suppressed")

    def __init__(self, message_id: str | None, status: str | None) -> None:
        self.message_id = message_id
        self.status = status
        if status is not None and status not in self.ANYMAIL_STATUSES:
            raise ValueError(f"Invalid recipient status {status!r}")

    def __repr__(self) -> str:
        return f"AnymailRecipientStatus(message_id={self.message_id!r}, status={self.status!r})"


class AnymailStatus:
    """The normalized response from an ESP's send call (``message.anymail_status``)."""

    def __init__(self) -> None:
        self.message_id: Any = None  # str, or set of str when recipients differ
        self.status: set[str] | None = None
        self.recipients: dict[str, AnymailRecipientStatus] = {}
        self.esp_response: Any = None

    def __repr__(self) -> str:
        details = [f"status={self.status!r}", f"message_id={self.message_id!r}"]
        if len(self.recipients) > 0:
            details.append(f"{len(self.recipients)} recipients")
        return f"AnymailStatus<{', '.join(details)}>"

    def set_recipient_status(self, recipients: dict[str, AnymailRecipientStatus]) -> None:
        """Merge recipients' statuses in, and derive message_id and status from them."""
        self.recipients.update(recipients)
        recipient_statuses = self.recipients.values()
        self.status = {recipient.status for recipient in recipient_statuses}
        message_ids = {
            recipient.message_id
            for recipient in recipient_statuses
            if recipient.message_id is not None
        }
        if len(message_ids) == 1:
            self.message_id = message_ids.pop()
        elif len(message_ids) == 0:
            self.message_id = None
        else:
            self.message_id = message_ids


def unquote_content_id(content_id: str) -> str:
    """'<abc@example>' -> 'abc@example'."""
    return unquote(content_id)
