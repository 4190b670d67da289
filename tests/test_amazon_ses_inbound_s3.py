"""The Amazon SES inbound webhook with the S3 receipt action, against a local S3 (moto's server).

The S3 action stores the raw message in a bucket and notifies SNS without
it (inbound_s3.json, shaped like the "alert notification" in
https://docs.aws.amazon.com/ses/latest/dg/receiving-email-notifications-examples.html);
the webhook reads the object with boto3, configured the way the sending
backend is (AMAZON_SES_SESSION_PARAMS, AMAZON_SES_CLIENT_PARAMS) plus
AMAZON_SES_S3_CLIENT_PARAMS.
"""

import hashlib
import json
import socket
from contextlib import contextmanager
from urllib.request import Request, urlopen

import boto3
import pytest

from inbound.models import InboundMessage
from sending.exceptions import AnymailConfigurationError
from tests.inbound_contract import InboundWebhookContract
from tests.test_amazon_ses_inbound import (
    CONTENT_TYPE,
    eml,
    fixture,
    post_notification,
    sns_envelope,
    sns_headers,
    stored_raw,
)
from tracking import services
from tracking.models import WebhookCall, WebhookCallStatus

pytestmark = pytest.mark.django_db

BUCKET = "mailhub-inbound"
PREFIX = "inbound"
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto server on a free local port with the inbound bucket, for this module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
        # moto keeps its state per process: leave none for other modules' servers
        urlopen(Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    finally:
        server.stop()


def s3_client(endpoint, **credentials):
    session = boto3.session.Session(**(credentials or FAKE_CREDENTIALS))
    return session.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def s3(moto_endpoint):
    """The test's S3 client; objects it puts are deleted after the test."""
    client = s3_client(moto_endpoint)
    yield client
    listing = client.list_objects_v2(Bucket=BUCKET)
    for item in listing.get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])


@pytest.fixture(autouse=True)
def s3_settings(settings, moto_endpoint):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": "username:password",
        "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
        "AMAZON_SES_SESSION_PARAMS": dict(FAKE_CREDENTIALS),
        "AMAZON_SES_CLIENT_PARAMS": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }
    return settings


def s3_notification(key: str, *, bucket: str = BUCKET) -> dict:
    notification = fixture("inbound_s3.json")
    notification["receipt"]["action"].update(bucketName=bucket, objectKey=key)
    notification["mail"]["messageId"] = key.rpartition("/")[2]
    return notification


def closed_port_endpoint() -> str:
    """An http endpoint on localhost where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


NO_RETRIES = {"retries": {"total_max_attempts": 1}, "connect_timeout": 2}


# ---------------------------------------------------------------------------
# The shared contract, with every message delivered through S3


class TestAmazonSESInboundS3Contract(InboundWebhookContract):
    esp = "amazon_ses"

    @pytest.fixture(autouse=True)
    def s3_contract_settings(self, webhook_settings, s3, moto_endpoint):
        self.settings.ANYMAIL = {
            **self.settings.ANYMAIL,
            "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
            "AMAZON_SES_SESSION_PARAMS": dict(FAKE_CREDENTIALS),
            "AMAZON_SES_CLIENT_PARAMS": {"endpoint_url": moto_endpoint},
        }
        self.s3 = s3

    def inbound_body(self, raw, envelope_sender, envelope_recipient):
        # SES's message ids are opaque; derive one so the same raw gets the same key
        key = f"{PREFIX}/{hashlib.sha1(raw).hexdigest()}"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=raw)
        notification = s3_notification(key)
        notification["mail"]["source"] = envelope_sender
        notification["receipt"]["recipients"] = [envelope_recipient]
        return json.dumps(sns_envelope(notification)).encode(), CONTENT_TYPE

    def signature_headers(self, body, content_type):
        try:
            envelope = json.loads(body)
        except ValueError:
            return {}
        return sns_headers(envelope)


# ---------------------------------------------------------------------------
# Fetching from S3


def test_s3_action_message_is_read_from_the_bucket_and_stored_exactly(client, s3):
    notification = fixture("inbound_s3.json")
    action = notification["receipt"]["action"]
    raw = eml("inbound_multipart.eml")
    s3.put_object(Bucket=action["bucketName"], Key=action["objectKey"], Body=raw)

    response = post_notification(client, notification)

    assert response.status_code == 200, response.content
    stored = InboundMessage.objects.get()
    assert stored_raw(stored) == raw
    # The object key is the rule's prefix and the event id (mail.messageId)
    assert stored.event_id == "k3l9v0m5c2tq8hd4r7fjbn1s6pe0ua2gwy5oi9x3"
    assert action["objectKey"] == f"{action['objectKeyPrefix']}/{stored.event_id}"
    assert (stored.envelope_sender, stored.envelope_recipient) == (
        "ann@example.net",
        "support@inbound.example.com",
    )
    assert stored.spam_detected is True  # spamVerdict FAIL
    assert stored.subject == "Invoice question"
    assert stored.from_address == "ann@example.net"
    assert {a.filename for a in stored.attachments.all()} == {"logo.png", "invoice 2026-11.pdf"}
    # Left in the bucket, as documented
    assert s3.get_object(Bucket=BUCKET, Key=action["objectKey"])["Body"].read() == raw


def test_s3_message_keeps_its_non_utf8_bytes(client, s3):
    raw = eml("inbound_latin1.eml")
    key = f"{PREFIX}/latin1-message"
    s3.put_object(Bucket=BUCKET, Key=key, Body=raw)
    assert post_notification(client, s3_notification(key)).status_code == 200
    stored = InboundMessage.objects.get()
    assert stored_raw(stored) == raw
    assert stored.subject == "Café crème à emporter"
    assert "Un café crème" in stored.text


def test_missing_object_is_503_and_stored_when_sns_retries(client, s3):
    key = f"{PREFIX}/not-there-yet"
    notification = s3_notification(key)

    response = post_notification(client, notification)

    assert response.status_code == 503
    error = response.json()["error"]
    assert f"s3://{BUCKET}/{key}" in error and "NoSuchKey" in error
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert "NoSuchKey" in call.error
    assert not InboundMessage.objects.exists()

    s3.put_object(Bucket=BUCKET, Key=key, Body=eml("inbound_multipart.eml"))
    assert post_notification(client, notification).status_code == 200  # SNS's retry
    call.refresh_from_db()
    assert call.status == WebhookCallStatus.PROCESSED
    assert WebhookCall.objects.count() == 1
    assert InboundMessage.objects.get().webhook_call == call


def test_failed_fetch_can_be_reprocessed_once_the_object_is_readable(client, s3):
    key = f"{PREFIX}/reprocess-me"
    assert post_notification(client, s3_notification(key)).status_code == 503
    call = WebhookCall.objects.get()

    s3.put_object(Bucket=BUCKET, Key=key, Body=eml("inbound_multipart.eml"))
    assert services.webhook_call_reprocess(call=call) == 1
    call.refresh_from_db()
    assert call.status == WebhookCallStatus.PROCESSED
    assert InboundMessage.objects.get().subject == "Invoice question"


def test_missing_bucket_is_503(client):
    response = post_notification(client, s3_notification("inbound/x", bucket="no-such-bucket"))
    assert response.status_code == 503
    assert "NoSuchBucket" in response.json()["error"]


@contextmanager
def without_s3_access(endpoint):
    """Credentials of an IAM user with no policies, with moto checking IAM meanwhile."""
    iam = boto3.session.Session(**FAKE_CREDENTIALS).client(
        "iam", endpoint_url=endpoint, region_name="us-east-1"
    )
    iam.create_user(UserName="no-s3-access")
    key = iam.create_access_key(UserName="no-s3-access")["AccessKey"]

    def reset_auth(count: bytes):
        request = Request(
            f"{endpoint}/moto-api/reset-auth",
            data=count,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urlopen(request) as response:
            response.read()

    reset_auth(b"0")
    try:
        yield {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
    finally:
        reset_auth(b"inf")  # (the user goes with the module's reset)


def test_access_denied_is_503_naming_the_permission(client, s3, settings, moto_endpoint):
    key = f"{PREFIX}/private"
    s3.put_object(Bucket=BUCKET, Key=key, Body=eml("inbound_multipart.eml"))

    with without_s3_access(moto_endpoint) as credentials:
        settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_SESSION_PARAMS": credentials}
        response = post_notification(client, s3_notification(key))

    assert response.status_code == 503
    error = response.json()["error"]
    assert "AccessDenied" in error and "s3:GetObject" in error
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_s3_unreachable_is_503(client, settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_CLIENT_PARAMS": {"endpoint_url": closed_port_endpoint(), "config": NO_RETRIES},
    }
    response = post_notification(client, s3_notification(f"{PREFIX}/anything"))
    assert response.status_code == 503
    assert "Could not connect" in response.json()["error"]


def test_object_over_the_inbound_size_cap_is_413(client, s3, settings):
    key = f"{PREFIX}/large"
    s3.put_object(Bucket=BUCKET, Key=key, Body=eml("inbound_multipart.eml"))
    # Enough for the notification, not for the message
    settings.MAILHUB = {**settings.MAILHUB, "INBOUND_MAX_BODY_BYTES": 2000}
    response = post_notification(client, s3_notification(key))
    assert response.status_code == 413
    assert "INBOUND_MAX_BODY_BYTES" in response.json()["error"]
    assert not InboundMessage.objects.exists()


def test_message_encrypted_by_the_receipt_rule_is_400(client, s3):
    # What the S3 encryption client stores: ciphertext, and the wrapped key in metadata
    key = f"{PREFIX}/encrypted"
    s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=b"\x8f\x02ciphertext",
        Metadata={
            "x-amz-key-v2": "AQIDAHhZ...",
            "x-amz-cek-alg": "AES/GCM/NoPadding",
            "x-amz-wrap-alg": "kms",
        },
    )
    response = post_notification(client, s3_notification(key))
    assert response.status_code == 400
    assert "Encrypt message" in response.json()["error"]


# ---------------------------------------------------------------------------
# Settings


def test_s3_client_params_are_merged_over_client_params(client, s3, settings, moto_endpoint):
    # CLIENT_PARAMS pointing at an SES-only endpoint; S3_CLIENT_PARAMS overrides it for S3
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_CLIENT_PARAMS": {
            "endpoint_url": closed_port_endpoint(),
            "region_name": "us-east-1",
            "config": NO_RETRIES,
        },
        "AMAZON_SES_S3_CLIENT_PARAMS": {"endpoint_url": moto_endpoint},
    }
    key = f"{PREFIX}/via-s3-params"
    s3.put_object(Bucket=BUCKET, Key=key, Body=eml("inbound_multipart.eml"))
    assert post_notification(client, s3_notification(key)).status_code == 200


def test_invalid_client_config_names_the_settings(client, s3, settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_S3_CLIENT_PARAMS": {"config": {"no_such_option": 1}},
    }
    key = f"{PREFIX}/config"
    s3.put_object(Bucket=BUCKET, Key=key, Body=eml("inbound_multipart.eml"))
    with pytest.raises(AnymailConfigurationError, match="AMAZON_SES_S3_CLIENT_PARAMS"):
        post_notification(client, s3_notification(key))
    # Kept for reprocessing once the setting is fixed
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert "AMAZON_SES_S3_CLIENT_PARAMS" in call.error
