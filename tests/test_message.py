"""AnymailMessage, the inline-image helpers and AnymailStatus."""

from email.mime.image import MIMEImage

import pytest
from django.core.mail import EmailMultiAlternatives

from sending.message import (
    AnymailMessage,
    AnymailMessageMixin,
    AnymailRecipientStatus,
    AnymailStatus,
    attach_inline_image,
    attach_inline_image_file,
)
from sending.utils import UNSET

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00"
    b"\x00\x00\x00IEND\xaeB`\x82"
)


def test_constructor_accepts_anymail_attributes():
    message = AnymailMessage(
        subject="Welcome",
        body="Hi",
        to=["user@example.com"],
        tags=["Onboarding"],
        metadata={"user_id": 7},
        track_clicks=True,
        template_id="welcome",
    )
    assert message.tags == ["Onboarding"]
    assert message.metadata == {"user_id": 7}
    assert message.track_clicks is True
    assert message.template_id == "welcome"
    assert message.subject == "Welcome"


def test_unset_attributes_are_unset_not_none():
    message = AnymailMessage(to=["user@example.com"])
    assert message.merge_data is UNSET
    assert message.send_at is UNSET


def test_new_message_has_empty_status():
    message = AnymailMessage()
    assert message.anymail_status.status is None
    assert message.anymail_status.message_id is None
    assert message.anymail_status.recipients == {}


def test_mixin_adds_attributes_to_other_message_classes():
    class TemplatedMessage(AnymailMessageMixin, EmailMultiAlternatives):
        pass

    message = TemplatedMessage(subject="s", tags=["a"], esp_extra={"x": 1})
    assert message.tags == ["a"]
    assert message.esp_extra == {"x": 1}
    assert isinstance(message, EmailMultiAlternatives)


def test_attach_inline_image_returns_content_id_without_brackets():
    message = EmailMultiAlternatives()
    cid = attach_inline_image(message, PNG, filename="dot.png")
    assert not cid.startswith("<")
    assert cid.endswith("@inline")
    (attachment,) = message.attachments
    assert isinstance(attachment, MIMEImage)
    assert attachment["Content-ID"] == f"<{cid}>"
    assert attachment.get_content_disposition() == "inline"
    assert attachment.get_filename() == "dot.png"
    assert attachment.get_payload(decode=True) == PNG


def test_attach_inline_image_honours_idstring_and_domain():
    message = AnymailMessage()
    cid = message.attach_inline_image(PNG, idstring="logo", domain="example.com")
    assert cid.endswith("@example.com")
    assert ".logo@" in cid or "logo" in cid.split("@")[0]


def test_attach_inline_image_file_uses_basename(tmp_path):
    path = tmp_path / "picture.png"
    path.write_bytes(PNG)
    message = AnymailMessage()
    cid = attach_inline_image_file(message, path)
    (attachment,) = message.attachments
    assert attachment.get_filename() == "picture.png"
    assert attachment["Content-ID"] == f"<{cid}>"


def test_status_single_message_id_when_recipients_share_it():
    status = AnymailStatus()
    status.set_recipient_status(
        {
            "a@example.com": AnymailRecipientStatus("id-1", "sent"),
            "b@example.com": AnymailRecipientStatus("id-1", "queued"),
        }
    )
    assert status.message_id == "id-1"
    assert status.status == {"sent", "queued"}


def test_status_message_id_is_a_set_when_recipients_differ():
    status = AnymailStatus()
    status.set_recipient_status(
        {
            "a@example.com": AnymailRecipientStatus("id-1", "sent"),
            "b@example.com": AnymailRecipientStatus("id-2", "rejected"),
            "c@example.com": AnymailRecipientStatus(None, "invalid"),
        }
    )
    assert status.message_id == {"id-1", "id-2"}
    assert status.status == {"sent", "rejected", "invalid"}


def test_recipient_status_rejects_unknown_status_value():
    with pytest.raises(ValueError, match="Invalid recipient status 'delivered'"):
        AnymailRecipientStatus("id", "delivered")
