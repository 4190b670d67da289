"""Amazon SES backend against a local SES API: moto's server mode.

The backend builds its own boto3 session and client from settings, signs
real HTTP requests and parses real responses; moto checks the sender
identity like SES does and keeps what it accepted (shown at
/moto-api/data.json). moto implements SendEmail with raw and simple
content only (templated content and SendBulkEmail are not implemented), so
template and batch sends are covered by the Stubber tests in
test_amazon_ses_backend.py.
"""

import json
from email import message_from_string, policy
from urllib.request import urlopen

import boto3
import pytest
from django.core.mail import send_mail

from sending.exceptions import AnymailAPIError
from sending.message import AnymailMessage
from tests.helpers import assert_recorded

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.amazon_ses.EmailBackend"
SENDER = "sender@example.com"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server on a free local port, with SENDER verified, for this module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.session.Session(**FAKE_CREDENTIALS).client(
            "sesv2", endpoint_url=endpoint, region_name="us-east-1"
        )
        client.create_email_identity(EmailIdentity=SENDER)
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def amazon_ses(settings, use_backend, moto_endpoint):
    settings.ANYMAIL = {
        "AMAZON_SES_SESSION_PARAMS": dict(FAKE_CREDENTIALS),
        "AMAZON_SES_CLIENT_PARAMS": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }
    use_backend(BACKEND)
    return moto_endpoint


def sent_raw_message(endpoint, message_id):
    """The raw message moto accepted with message_id."""
    with urlopen(f"{endpoint}/moto-api/data.json") as response:
        data = json.load(response)
    matches = [raw for raw in data["ses"]["RawMessage"] if raw["id"] == message_id]
    assert len(matches) == 1, f"moto has no message {message_id}"
    return matches[0]


def test_message_arrives_in_moto(amazon_ses):
    msg = AnymailMessage(
        subject="Hello from mailhub",
        body="Text body",
        from_email=f"Sender <{SENDER}>",
        to=["to@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        tags=["welcome"],
        metadata={"user_id": 12},
    )
    msg.attach_alternative("<p>HTML body</p>", "text/html")
    msg.attach("notes.txt", "attached text", "text/plain")
    msg.send()

    message_id = msg.anymail_status.message_id
    assert msg.anymail_status.status == {"queued"}
    raw = sent_raw_message(amazon_ses, message_id)
    assert raw["source"] == f"Sender <{SENDER}>"
    assert {"to@example.com", "cc@example.com", "bcc@example.com"} <= set(raw["destinations"])
    mime = message_from_string(raw["raw_data"], policy=policy.default)
    assert mime["Subject"] == "Hello from mailhub"
    assert mime["X-Tag"] == "welcome"
    assert json.loads(mime["X-Metadata"]) == {"user_id": 12}
    assert "Bcc" not in mime
    assert mime.get_body(("html",)).get_content().strip() == "<p>HTML body</p>"
    [attachment] = mime.iter_attachments()
    assert attachment.get_filename() == "notes.txt"
    assert_recorded(
        status="sent",
        esp="amazon_ses",
        recipients={
            "to@example.com": ("queued", message_id),
            "cc@example.com": ("queued", message_id),
            "bcc@example.com": ("queued", message_id),
        },
    )


def test_unverified_sender_is_rejected(amazon_ses):
    with pytest.raises(AnymailAPIError) as excinfo:
        send_mail("Subject", "Body", "stranger@example.com", ["to@example.com"])
    error = excinfo.value
    assert "MessageRejected" in str(error)
    assert "Did not have authority to send from email stranger@example.com" in str(error)
    assert error.status_code == 400
    assert_recorded(
        status="failed",
        esp="amazon_ses",
        recipients={"to@example.com": ("failed", "")},
        error_contains="Did not have authority to send from email stranger@example.com",
    )
