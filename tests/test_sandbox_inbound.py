"""Raw-MIME inbound (the sandbox ESP's), and the inbound contract every ESP runs."""

import pytest

from inbound.models import InboundMessage
from inbound.services import sanitize_filename
from sending.backends.sandbox import EmailBackend
from sending.message import AnymailMessage
from tests.inbound_contract import InboundWebhookContract, basic_auth, sample_mime

pytestmark = pytest.mark.django_db


class TestSandboxInboundContract(InboundWebhookContract):
    esp = "sandbox"

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        return raw, "message/rfc822"

    def post(self, client, body, content_type, auth=None, **extra):
        extra.setdefault("HTTP_X_ENVELOPE_SENDER", self.envelope_sender)
        extra.setdefault("HTTP_X_ENVELOPE_RECIPIENT", self.envelope_recipient)
        return super().post(client, body, content_type, auth=auth, **extra)

    def test_malformed_payload_is_400_and_kept(self, client):
        # Any bytes are a (possibly broken) MIME message here; the payload-level
        # check is the content type.
        response = self.post(client, b"From: x\r\n\r\n", "application/json")
        assert response.status_code == 400
        assert "message/rfc822" in response.json()["error"]

    test_inbound_contract_malformed_payload_is_400_and_kept = None


@pytest.mark.parametrize(
    "declared, expected",
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system32\\evil.exe", "evil.exe"),
        ("..", "attachment"),
        (".htaccess", "htaccess"),
        ("a\x00b\x1fc.txt", "a_b_c.txt"),
        ('we<ird>:"na|me?*.txt', "we_ird___na_me__.txt"),
        ("", "attachment"),
        (None, "attachment"),
        ("x" * 300 + ".pdf", "x" * 116 + ".pdf"),
    ],
)
def test_sanitize_filename(declared, expected):
    assert sanitize_filename(declared) == expected


def test_reply_is_linked_to_the_sent_message(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "username:password"}
    sent = AnymailMessage("Hello", "Body", "support@example.com", ["ann@example.com"])
    EmailBackend().send_messages([sent])
    message_id = sent.anymail_status.message_id
    raw = (
        f"From: ann@example.com\r\nTo: support@example.com\r\nSubject: Re: Hello\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\n\r\nThanks!\r\n"
    ).encode()
    response = client.generic(
        "POST",
        "/anymail/sandbox/inbound/",
        raw,
        content_type="message/rfc822",
        HTTP_AUTHORIZATION=basic_auth(),
    )
    assert response.status_code == 200
    reply = InboundMessage.objects.get()
    assert reply.reply_to_message_id == sent.mailhub_record_id


def test_large_message_is_parsed_and_stored(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "username:password"}
    raw = sample_mime(attachment=b"\x01" * (3 * 1024 * 1024))
    response = client.generic(
        "POST",
        "/anymail/sandbox/inbound/",
        raw,
        content_type="message/rfc822",
        HTTP_AUTHORIZATION=basic_auth(),
    )
    assert response.status_code == 200
    attachment = InboundMessage.objects.get().attachments.get(filename="invoice.pdf")
    assert attachment.size == 3 * 1024 * 1024
