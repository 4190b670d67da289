"""The Amazon SES tracking webhook: SES events delivered by an Amazon SNS HTTPS subscription.

Fixtures are SES event records shaped like
https://docs.aws.amazon.com/ses/latest/dg/event-publishing-retrieving-sns-examples.html
(event publishing, "eventType") and
https://docs.aws.amazon.com/ses/latest/dg/notification-examples.html
(identity notifications, "notificationType"), wrapped in SNS HTTP messages
shaped like https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html.
Signature tests sign with their own RSA key and self-signed certificate,
served by `responses` at an SNS-shaped SigningCertURL.
"""

import base64
import json
import logging
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailInsecureWebhookWarning,
)
from sending.message import AnymailMessage
from sending.models import Recipient, Suppression
from sending.signals import tracking
from tests.conftest import make_backend
from tests.webhook_contract import WEBHOOK_SECRET, EventSpec, TrackingWebhookContract, basic_auth
from tracking import services
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks import sns
from tracking.webhooks.amazon_ses import AmazonSESTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/amazon_ses/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "amazon_ses"
CONTENT_TYPE = "text/plain; charset=UTF-8"  # what SNS sends by default
TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:SES_Tracking_Events"
# SendEmail's MessageId, as the sending backend records it (and mail.messageId carries)
MESSAGE_ID = "0100018f3c9d2b2a-5b1c3f4e-8d2a-4c6b-9f1e-2a3b4c5d6e7f-000000"
SNS_MESSAGE_ID = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"
CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def sns_notification(ses_event, *, message_id=SNS_MESSAGE_ID, timestamp=None) -> dict:
    """An SNS Notification carrying ses_event (a dict, or the raw Message string)."""
    envelope = fixture("sns_notification.json")
    envelope["Message"] = ses_event if isinstance(ses_event, str) else json.dumps(ses_event)
    envelope["MessageId"] = message_id
    if timestamp is not None:
        envelope["Timestamp"] = iso(timestamp)
    return envelope


def sns_headers(envelope: dict) -> dict:
    """The x-amz-sns-* headers SNS sends with envelope (as Django META keys)."""
    headers = {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": envelope["Type"],
        "HTTP_X_AMZ_SNS_MESSAGE_ID": envelope["MessageId"],
        "HTTP_X_AMZ_SNS_TOPIC_ARN": envelope["TopicArn"],
    }
    if envelope["Type"] == "Notification":
        headers["HTTP_X_AMZ_SNS_SUBSCRIPTION_ARN"] = f"{envelope['TopicArn']}:c9135db0-26c4"
    return headers


def post_sns(client, envelope, *, content_type=CONTENT_TYPE, **extra):
    headers = {"HTTP_AUTHORIZATION": basic_auth(), **sns_headers(envelope), **extra}
    body = json.dumps(envelope).encode()
    return client.generic("POST", URL, body, content_type=content_type, **headers)


def post_event(client, ses_event, **kwargs):
    return post_sns(client, sns_notification(ses_event, **kwargs))


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.fixture(autouse=True)
def ses_settings(settings):
    # Signatures have their own tests (TestSNSSignatures), which sign for real
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
    }
    sns.clear_certificate_cache()
    yield settings
    sns.clear_certificate_cache()


@pytest.fixture
def tracked():
    """The events the tracking signal is sent with."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append(event)

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


# ---------------------------------------------------------------------------
# The shared contract


# Normalized event type -> the SES event that produces it
SES_EVENTS = {
    "sent": ("Send", "send", {}),
    "delivered": (
        "Delivery",
        "delivery",
        {
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
        },
    ),
    "deferred": ("DeliveryDelay", "deliveryDelay", {"delayType": "TransientCommunicationFailure"}),
    "bounced": ("Bounce", "bounce", {"bounceType": "Permanent", "bounceSubType": "General"}),
    "complained": ("Complaint", "complaint", {"complaintFeedbackType": "abuse"}),
    "opened": ("Open", "open", {"ipAddress": "192.0.2.1", "userAgent": "Mozilla/5.0"}),
    "clicked": ("Click", "click", {"link": "https://example.com", "userAgent": "Mozilla/5.0"}),
}


def ses_event_for(spec: EventSpec) -> dict:
    event_type, key, detail = SES_EVENTS[spec.event_type]
    detail = {**detail, "timestamp": iso(spec.timestamp)}
    if event_type == "Delivery":
        detail["recipients"] = [spec.recipient]
    elif event_type == "DeliveryDelay":
        detail["delayedRecipients"] = [{"emailAddress": spec.recipient, "status": "4.4.1"}]
    elif event_type == "Bounce":
        detail["bouncedRecipients"] = [{"emailAddress": spec.recipient, "status": "5.1.1"}]
    elif event_type == "Complaint":
        detail["complainedRecipients"] = [{"emailAddress": spec.recipient}]
    return {
        "eventType": event_type,
        "mail": {
            "timestamp": iso(spec.timestamp - timedelta(minutes=1)),
            "source": "orders@example.com",
            "sendingAccountId": "123456789012",
            "messageId": spec.message_id,
            "destination": [spec.recipient],
            "headersTruncated": False,
            "headers": [{"name": "To", "value": spec.recipient}],
            "tags": {"ses:configuration-set": ["TrackingConfigSet"]},
        },
        key: detail,
    }


class TestAmazonSESWebhookContract(TrackingWebhookContract):
    esp = "amazon_ses"
    message_id = MESSAGE_ID
    one_event_per_call = True  # SNS posts one Notification per request

    @pytest.fixture(autouse=True)
    def no_sns_signatures(self, webhook_settings):
        self.settings.ANYMAIL = {
            **self.settings.ANYMAIL,
            "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
        }

    def event_body(self, events):
        (spec,) = events
        envelope = sns_notification(
            ses_event_for(spec), message_id=spec.event_id, timestamp=spec.timestamp
        )
        return json.dumps(envelope).encode(), CONTENT_TYPE

    def signature_headers(self, body, content_type):
        try:
            envelope = json.loads(body)
        except ValueError:
            return {}  # a deliberately broken body: SNS wouldn't have sent it
        return sns_headers(envelope)


# ---------------------------------------------------------------------------
# Event publishing ("eventType") records


def test_send_is_sent_for_every_destination_with_tags_and_metadata(client, tracked):
    response = post_event(client, fixture("event_send.json"))
    assert response.status_code == 200, response.content
    assert [(e.event_type, e.recipient) for e in tracked] == [
        ("sent", "alice@example.net"),
        ("sent", "bob@example.org"),
    ]
    event = tracked[0]
    assert event.message_id == MESSAGE_ID
    assert event.timestamp == at("2026-11-20T12:00:00.120+00:00")  # mail.timestamp
    assert event.event_id == f"{SNS_MESSAGE_ID}:alice@example.net"
    assert tracked[1].event_id == f"{SNS_MESSAGE_ID}:bob@example.org"
    assert event.tags == ["shipping", "transactional"]
    assert event.metadata == {"order_id": "A-1234", "user_id": 42}
    assert event.esp_event["mail"]["tags"]["ses:configuration-set"] == ["TrackingConfigSet"]


def test_delivery_is_delivered_with_smtp_response(client, tracked):
    post_event(client, fixture("event_delivery.json"))
    (event,) = tracked
    assert (event.event_type, event.recipient) == ("delivered", "alice@example.net")
    assert event.timestamp == at("2026-11-20T12:00:02.133+00:00")
    assert event.mta_response == "250 2.6.0 Message received"
    assert (event.tags, event.metadata) == (["shipping"], {"order_id": "A-1234", "user_id": 42})
    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.message_id) == (
        "amazon_ses",
        "delivered",
        MESSAGE_ID,
    )


def test_permanent_bounce_is_one_bounced_event_per_bounced_recipient(client, tracked):
    post_event(client, fixture("event_bounce.json"))
    assert [(e.event_type, e.reject_reason, e.recipient) for e in tracked] == [
        ("bounced", "bounced", "alice@example.net"),
        ("bounced", "bounced", "bob@example.org"),
    ]
    assert tracked[0].mta_response == "smtp; 550 5.1.1 user unknown"
    assert tracked[1].mta_response == "smtp; 550 5.2.1 mailbox disabled"
    assert tracked[0].description == "Permanent bounce (General)"
    assert tracked[0].timestamp == at("2026-11-20T12:00:03.669+00:00")
    assert len({e.event_id for e in tracked}) == 2
    assert Event.objects.count() == 2


def test_permanent_bounce_suppresses_the_addresses(client):
    post_event(client, fixture("event_bounce.json"))
    assert set(Suppression.objects.values_list("address", "reason")) == {
        ("alice@example.net", "bounced"),
        ("bob@example.org", "bounced"),
    }


def test_transient_bounce_is_final_so_bounced_timed_out(client, tracked):
    # SES only publishes a Transient bounce once it has stopped retrying
    post_event(client, fixture("event_bounce_transient.json"))
    (event,) = tracked
    assert (event.event_type, event.reject_reason) == ("bounced", "timed_out")
    assert event.mta_response == "smtp; 552 5.2.2 Mailbox full"
    assert event.description == "Transient bounce (MailboxFull)"
    assert event.tags == []  # no headers in this record
    assert not Suppression.objects.exists()


def test_account_suppression_list_bounce_is_rejected_not_sent(client, tracked):
    post_event(client, fixture("event_bounce_suppressed.json"))
    (event,) = tracked
    assert (event.event_type, event.reject_reason) == ("rejected", "bounced")
    assert event.recipient == "gone@example.net"
    assert "suppression list" in event.mta_response


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "expected"),
    [
        ("Permanent", "NoEmail", ("bounced", "bounced")),
        ("Permanent", "Suppressed", ("rejected", "bounced")),
        ("Permanent", "SomethingNew", ("bounced", "bounced")),
        ("Transient", "General", ("bounced", "timed_out")),
        ("Transient", "MessageTooLarge", ("bounced", "other")),
        ("Transient", "ContentRejected", ("bounced", "spam")),
        ("Transient", "AttachmentRejected", ("bounced", "blocked")),
        ("Undetermined", "Undetermined", ("bounced", "other")),
    ],
)
def test_bounce_types_map_to_event_type_and_reject_reason(
    client, tracked, bounce_type, subtype, expected
):
    ses_event = fixture("event_bounce_transient.json")
    ses_event["bounce"].update(bounceType=bounce_type, bounceSubType=subtype)
    post_event(client, ses_event)
    (event,) = tracked
    assert (event.event_type, event.reject_reason) == expected


def test_complaint_is_complained_and_suppresses(client, tracked):
    post_event(client, fixture("event_complaint.json"))
    (event,) = tracked
    assert (event.event_type, event.recipient) == ("complained", "alice@example.net")
    assert event.description == "abuse"
    assert event.timestamp == at("2026-11-20T14:41:02.669+00:00")
    assert Suppression.objects.get().reason == "complained"


def test_complaint_on_account_suppression_list_is_rejected_spam(client, tracked):
    ses_event = fixture("event_complaint.json")
    ses_event["complaint"]["complaintSubType"] = "OnAccountSuppressionList"
    post_event(client, ses_event)
    (event,) = tracked
    assert (event.event_type, event.reject_reason) == ("rejected", "spam")
    assert not Suppression.objects.exists()


def test_not_spam_feedback_is_not_a_complaint(client, tracked):
    ses_event = fixture("event_complaint.json")
    ses_event["complaint"]["complaintFeedbackType"] = "not-spam"
    post_event(client, ses_event)
    assert tracked[0].event_type == "unknown"
    assert not Suppression.objects.exists()


def test_reject_is_rejected_blocked(client, tracked):
    post_event(client, fixture("event_reject.json"))
    (event,) = tracked
    assert (event.event_type, event.reject_reason) == ("rejected", "blocked")
    assert event.description == "Bad content"


def test_delivery_delay_is_deferred(client, tracked):
    post_event(client, fixture("event_delivery_delay.json"))
    (event,) = tracked
    assert (event.event_type, event.recipient) == ("deferred", "alice@example.net")
    assert event.description == "TransientCommunicationFailure"
    assert event.mta_response == "smtp; 421 4.4.1 Unable to connect to remote host"
    assert event.timestamp == at("2026-11-20T12:10:40.095+00:00")


def test_open_is_opened_for_every_recipient_of_the_message(client, tracked):
    # SES's open tracking can't tell recipients apart
    post_event(client, fixture("event_open.json"))
    assert [(e.event_type, e.recipient) for e in tracked] == [
        ("opened", "alice@example.net"),
        ("opened", "bob@example.org"),
    ]
    assert tracked[0].user_agent.startswith("Mozilla/5.0 (iPhone")
    assert tracked[0].timestamp == at("2026-11-20T12:20:19.652+00:00")
    assert tracked[0].metadata == {"order_id": "A-1234"}


def test_click_is_clicked_with_url_and_user_agent(client, tracked):
    post_event(client, fixture("event_click.json"))
    (event,) = tracked
    assert event.event_type == "clicked"
    assert event.click_url == "https://shop.example.com/orders/A-1234?utm_source=email"
    assert "Chrome/120" in event.user_agent
    assert event.tags == ["shipping"]


def test_rendering_failure_is_failed_with_the_error(client, tracked):
    post_event(client, fixture("event_rendering_failure.json"))
    (event,) = tracked
    assert event.event_type == "failed"
    assert event.description == "Attribute 'order_no' is not present in the rendering data."
    assert event.timestamp == at("2026-11-20T12:00:00.120+00:00")


def test_unsubscribe_all_subscription_event_is_unsubscribed(client, tracked):
    post_event(client, fixture("event_subscription.json"))
    (event,) = tracked
    assert (event.event_type, event.recipient) == ("unsubscribed", "alice@example.net")
    assert event.description == (
        "Contact list Newsletter (UnsubscribeHeader); topics Monthly: OptOut"
    )
    assert Suppression.objects.get().reason == "unsubscribed"


def test_resubscribe_is_subscribed_and_single_topic_changes_are_unknown(client, tracked):
    resubscribe = fixture("event_subscription.json")
    subscription = resubscribe["subscription"]
    subscription["newTopicPreferences"], subscription["oldTopicPreferences"] = (
        subscription["oldTopicPreferences"],
        subscription["newTopicPreferences"],
    )
    post_event(client, resubscribe)
    topic_only = fixture("event_subscription.json")
    topic_only["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
    post_event(client, topic_only, message_id="second-sns-message")
    assert [e.event_type for e in tracked] == ["subscribed", "unknown"]


def test_unknown_event_type_is_kept_as_unknown(client, tracked):
    ses_event = fixture("event_send.json")
    ses_event["eventType"] = "SomethingNew"
    response = post_event(client, ses_event)
    assert response.status_code == 200
    assert {e.event_type for e in tracked} == {"unknown"}
    assert Event.objects.count() == 2


def test_tags_fall_back_to_the_message_tag_setting(client, tracked, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_MESSAGE_TAG_NAME": "Category"}
    post_event(client, fixture("event_delivery_delay.json"))  # no headers, tags only
    assert tracked[0].tags == ["shipping"]


def test_recipients_given_with_display_names_are_addr_specs(client, tracked):
    ses_event = fixture("event_open.json")
    ses_event["mail"]["destination"] = ['"Alice A." <alice@example.net>']
    post_event(client, ses_event)
    assert tracked[0].recipient == "alice@example.net"


def test_invalid_metadata_header_is_ignored(client, tracked, caplog):
    ses_event = fixture("event_delivery.json")
    ses_event["mail"]["headers"][-1]["value"] = "not json"
    with caplog.at_level(logging.WARNING):
        assert post_event(client, ses_event).status_code == 200
    assert tracked[0].metadata == {}
    assert "X-Metadata" in caplog.text


# ---------------------------------------------------------------------------
# Identity notifications ("notificationType")


def test_identity_bounce_notification(client, tracked):
    post_event(client, fixture("notification_bounce.json"))
    (event,) = tracked  # only the bounced recipient, not all of mail.destination
    assert (event.event_type, event.reject_reason, event.recipient) == (
        "bounced",
        "bounced",
        "jane@example.net",
    )
    assert event.message_id == MESSAGE_ID
    assert event.description == "Permanent bounce (NoEmail)"
    assert event.mta_response == "smtp; 550 5.1.1 <jane@example.net>... User unknown"
    assert (event.tags, event.metadata) == (["welcome"], {"user_id": 7})


def test_identity_complaint_notification_without_headers(client, tracked):
    post_event(client, fixture("notification_complaint.json"))
    (event,) = tracked
    assert (event.event_type, event.recipient) == ("complained", "richard@example.net")
    assert event.timestamp == at("2026-11-20T16:00:01.623+00:00")
    assert (event.tags, event.metadata) == ([], {})


def test_identity_delivery_notification_decodes_encoded_metadata(client, tracked):
    post_event(client, fixture("notification_delivery.json"))
    assert [(e.event_type, e.recipient) for e in tracked] == [
        ("delivered", "jane@example.net"),
        ("delivered", "mary@example.net"),
    ]
    assert tracked[0].metadata == {"city": "Zürich"}
    assert tracked[0].mta_response == "250 ok:  Message 64111812 accepted"


def test_timestamps_in_the_older_offset_format_are_parsed(client, tracked):
    ses_event = fixture("event_reject.json")
    ses_event["mail"]["timestamp"] = "2026-11-20T12:00:00 +0000"
    post_event(client, ses_event)
    assert tracked[0].timestamp == datetime(2026, 11, 20, 12, tzinfo=UTC)


# ---------------------------------------------------------------------------
# Linking to what the sending backend recorded


class FakeSESClient:
    """Stands in for boto3's sesv2 client: keeps each SendEmail call, returns MessageId."""

    def __init__(self):
        self.calls = []

    def send_email(self, **params):
        self.calls.append(params)
        return {"MessageId": MESSAGE_ID}

    def close(self):
        pass


def test_events_link_to_the_message_the_backend_sent(client, monkeypatch):
    ses = FakeSESClient()
    monkeypatch.setattr(
        boto3.session, "Session", lambda **params: SimpleNamespace(client=lambda *a, **k: ses)
    )
    message = AnymailMessage(
        "Shipped",
        "Your order shipped",
        "orders@example.com",
        ["Alice <alice@example.net>"],
        tags=["shipping"],
        metadata={"order_id": "A-1234", "note": "ünïcode " * 12},
    )
    make_backend("sending.backends.amazon_ses.EmailBackend").send_messages([message])
    assert message.anymail_status.message_id == MESSAGE_ID

    # SES reports the headers of the raw message it was given
    raw = message_from_bytes(ses.calls[0]["Content"]["Raw"]["Data"])
    ses_event = fixture("event_delivery.json")
    ses_event["mail"]["headers"] = [{"name": name, "value": value} for name, value in raw.items()]
    assert post_event(client, ses_event).status_code == 200

    recipient = Recipient.objects.get(address="alice@example.net")
    assert recipient.status == "delivered"
    event = Event.objects.get()
    assert event.recipient == recipient
    assert (event.tags, event.metadata) == (["shipping"], message.metadata)


# ---------------------------------------------------------------------------
# SNS messages that aren't SES events, and bad input


def test_ses_event_destination_test_message_is_accepted_without_events(client):
    message = "Successfully validated SNS topic for Amazon SES event publishing."
    response = post_event(client, message)
    assert response.status_code == 200
    assert not Event.objects.exists()
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


def test_ses_identity_subscription_succeeded_message_is_accepted_without_events(client):
    message = {
        "notificationType": "AmazonSnsSubscriptionSucceeded",
        "message": "You have successfully subscribed your Amazon SNS topic "
        f"'{TOPIC_ARN}' to receive 'Bounce' notifications from Amazon SES for identity "
        "'example.com'.",
    }
    assert post_event(client, message).status_code == 200
    assert not Event.objects.exists()


def test_inbound_receipt_notification_is_400_pointing_to_the_inbound_url(client):
    response = post_event(client, fixture("inbound_received.json"))
    assert response.status_code == 400
    assert "amazon_ses/inbound/" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_notification_that_isnt_an_ses_event_is_400(client):
    response = post_event(client, "Hello from the SNS console")
    assert response.status_code == 400
    assert "not an Amazon SES event" in response.json()["error"]


def test_payload_for_another_esp_is_400_saying_so(client):
    mailgun_body = {"signature": {"token": "x"}, "event-data": {"event": "delivered"}}
    response = client.post(
        URL, mailgun_body, content_type="application/json", HTTP_AUTHORIZATION=basic_auth()
    )
    assert response.status_code == 400
    assert "another ESP" in response.json()["error"]


def test_bare_ses_event_without_sns_envelope_is_400(client):
    response = client.post(
        URL,
        fixture("event_delivery.json"),
        content_type="application/json",
        HTTP_AUTHORIZATION=basic_auth(),
    )
    assert response.status_code == 400
    assert "bare Amazon SES event" in response.json()["error"]


def test_json_content_type_from_a_delivery_policy_is_accepted(client, tracked):
    # An HTTP/S delivery policy's headerContentType can make SNS send application/json
    envelope = sns_notification(fixture("event_delivery.json"))
    assert post_sns(client, envelope, content_type="application/json").status_code == 200
    assert len(tracked) == 1


def test_wrong_content_type_is_400(client):
    response = client.post(URL, {"Type": "Notification"}, HTTP_AUTHORIZATION=basic_auth())
    assert response.status_code == 400
    assert "text/plain" in response.json()["error"]


def test_malformed_json_is_400_and_kept(client):
    response = client.generic(
        "POST", URL, b'{"Type": "Notif', content_type=CONTENT_TYPE, HTTP_AUTHORIZATION=basic_auth()
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = client.generic(
        "POST", URL, b"", content_type=CONTENT_TYPE, HTTP_AUTHORIZATION=basic_auth()
    )
    assert response.status_code == 400
    assert "Empty" in response.json()["error"]


def test_unknown_sns_message_type_is_400(client):
    envelope = sns_notification(fixture("event_delivery.json"))
    envelope["Type"] = "Surprise"
    response = post_sns(client, envelope)
    assert response.status_code == 400
    assert "Surprise" in response.json()["error"]


def test_malformed_ses_event_is_400(client):
    ses_event = fixture("event_bounce.json")
    del ses_event["bounce"]["bouncedRecipients"]
    response = post_event(client, ses_event)
    assert response.status_code == 400
    assert "bouncedRecipients" in response.json()["error"]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("HTTP_X_AMZ_SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:999999999999:Other"),
        ("HTTP_X_AMZ_SNS_MESSAGE_TYPE", "SubscriptionConfirmation"),
        ("HTTP_X_AMZ_SNS_MESSAGE_ID", "another-message"),
    ],
)
def test_sns_headers_that_disagree_with_the_message_are_refused(client, header, value):
    envelope = sns_notification(fixture("event_delivery.json"))
    response = post_sns(client, envelope, **{header: value})
    assert response.status_code == 403
    assert "doesn't match" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_missing_basic_auth_is_401(client):
    envelope = sns_notification(fixture("event_delivery.json"))
    response = client.generic(
        "POST",
        URL,
        json.dumps(envelope).encode(),
        content_type=CONTENT_TYPE,
        **sns_headers(envelope),
    )
    assert response.status_code == 401


def test_no_webhook_secret_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        AmazonSESTrackingWebhookView()


def test_invalid_auto_confirm_setting_names_the_setting(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": 1}
    with pytest.raises(
        AnymailConfigurationError, match="AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS"
    ):
        AmazonSESTrackingWebhookView()


# ---------------------------------------------------------------------------
# Subscription confirmation


def confirmation() -> dict:
    return fixture("sns_subscription_confirmation.json")


def test_subscription_is_confirmed_by_default_with_webhook_secret(client, http):
    envelope = confirmation()
    http.get(envelope["SubscribeURL"], body="<ConfirmSubscriptionResponse/>")
    response = post_sns(client, envelope)
    assert response.status_code == 200, response.content
    assert len(http.calls) == 1
    call = WebhookCall.objects.get()
    assert (call.status, call.event_count) == (WebhookCallStatus.PROCESSED, 0)
    assert not Event.objects.exists()


def test_listed_topic_is_confirmed(client, http, settings):
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": [TOPIC_ARN],
    }
    envelope = confirmation()
    http.get(envelope["SubscribeURL"], body="<ConfirmSubscriptionResponse/>")
    assert post_sns(client, envelope).status_code == 200


def test_listed_topic_is_confirmed_even_without_webhook_secret(client, http, settings):
    settings.ANYMAIL = {
        "AMAZON_SES_VERIFY_SNS_SIGNATURES": False,
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": [TOPIC_ARN],
    }
    envelope = confirmation()
    http.get(envelope["SubscribeURL"], body="<ConfirmSubscriptionResponse/>")
    with pytest.warns(AnymailInsecureWebhookWarning):
        response = post_sns(client, envelope)
    assert response.status_code == 200


def test_unlisted_topic_is_not_confirmed(client, http, settings, caplog):
    other_topic = "arn:aws:sns:us-east-1:123456789012:Other"
    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": [other_topic],
    }
    with caplog.at_level(logging.WARNING):
        response = post_sns(client, confirmation())
    assert response.status_code == 400
    error = response.json()["error"]
    assert TOPIC_ARN in error and "not listed" in error
    assert confirmation()["Token"] in error  # to confirm it by hand
    assert "Not confirming" in caplog.text
    assert len(http.calls) == 0
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_auto_confirm_off_never_confirms(client, http, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False}
    response = post_sns(client, confirmation())
    assert response.status_code == 400
    assert "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS is off" in response.json()["error"]
    assert len(http.calls) == 0


def test_any_topic_needs_webhook_secret_to_be_confirmed(client, http, settings):
    settings.ANYMAIL = {"AMAZON_SES_VERIFY_SNS_SIGNATURES": False}
    with pytest.warns(AnymailInsecureWebhookWarning):
        response = post_sns(client, confirmation())
    assert response.status_code == 400
    assert "WEBHOOK_SECRET is not set" in response.json()["error"]
    assert len(http.calls) == 0


def test_subscribe_url_must_be_on_an_sns_host(client, http):
    envelope = confirmation()
    envelope["SubscribeURL"] = "https://attacker.example/?Action=ConfirmSubscription"
    response = post_sns(client, envelope)
    assert response.status_code == 400
    assert "not an https URL on an Amazon SNS host" in response.json()["error"]
    assert len(http.calls) == 0


def test_failed_confirmation_is_503_so_sns_retries(client, http):
    envelope = confirmation()
    http.get(envelope["SubscribeURL"], status=503)
    response = post_sns(client, envelope)
    assert response.status_code == 503
    assert "Couldn't confirm" in response.json()["error"]
    call = WebhookCall.objects.get()  # kept, marked failed
    assert call.status == WebhookCallStatus.FAILED
    assert "Couldn't confirm" in call.error


def test_refused_confirmation_can_be_reprocessed_after_allowing_the_topic(client, http, settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": False}
    envelope = confirmation()
    assert post_sns(client, envelope).status_code == 400
    call = WebhookCall.objects.get()

    settings.ANYMAIL = {
        **settings.ANYMAIL,
        "AMAZON_SES_AUTO_CONFIRM_SNS_SUBSCRIPTIONS": [TOPIC_ARN],
    }
    http.get(envelope["SubscribeURL"], body="<ConfirmSubscriptionResponse/>")
    services.webhook_call_reprocess(call=call)
    call.refresh_from_db()
    assert call.status == WebhookCallStatus.PROCESSED


def test_unsubscribe_confirmation_is_accepted_and_records_nothing(client, http):
    response = post_sns(client, fixture("sns_unsubscribe_confirmation.json"))
    assert response.status_code == 200
    assert len(http.calls) == 0  # not re-subscribing
    assert not Event.objects.exists()
    assert WebhookCall.objects.get().status == WebhookCallStatus.PROCESSED


# ---------------------------------------------------------------------------
# SNS signatures


class SNSSigner:
    """Signs SNS messages the way SNS does, with a fresh key and self-signed certificate."""

    def __init__(self, valid_from=None, valid_until=None):
        now = datetime.now(UTC)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - timedelta(days=1))
            .not_valid_after(valid_until or now + timedelta(days=365))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = certificate.public_bytes(serialization.Encoding.PEM)

    # Written out here (not taken from the code under test) from the SNS docs
    NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
    CONFIRMATION_FIELDS = (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    )

    def sign(self, envelope: dict, *, version: str = "2", cert_url: str = CERT_URL) -> dict:
        envelope = {**envelope, "SignatureVersion": version, "SigningCertURL": cert_url}
        fields = (
            self.NOTIFICATION_FIELDS
            if envelope["Type"] == "Notification"
            else self.CONFIRMATION_FIELDS
        )
        canonical = "".join(
            f"{name}\n{envelope[name]}\n" for name in fields if name in envelope
        ).encode()
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(canonical, padding.PKCS1v15(), algorithm)
        envelope["Signature"] = base64.b64encode(signature).decode()
        return envelope


@pytest.fixture(scope="module")
def signer():
    return SNSSigner()


class TestSNSSignatures:
    @pytest.fixture(autouse=True)
    def verify_signatures(self, ses_settings):
        ses_settings.ANYMAIL = {**ses_settings.ANYMAIL, "AMAZON_SES_VERIFY_SNS_SIGNATURES": True}

    def notification(self):
        return sns_notification(fixture("event_delivery.json"))

    @pytest.mark.parametrize("version", ["1", "2"])
    def test_valid_signature_is_accepted(self, client, http, signer, version):
        http.get(CERT_URL, body=signer.pem)
        response = post_sns(client, signer.sign(self.notification(), version=version))
        assert response.status_code == 200, response.content
        assert Event.objects.get().event_type == "delivered"

    def test_signature_is_verified_by_default(self, client, http, signer, settings):
        settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET}
        envelope = signer.sign(self.notification())
        envelope["Message"] = envelope["Message"].replace("alice@", "mallory@")
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, envelope).status_code == 403

    def test_notification_without_subject_is_accepted(self, client, http, signer):
        envelope = self.notification()
        del envelope["Subject"]
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, signer.sign(envelope)).status_code == 200

    def test_signed_subscription_confirmation_is_verified_then_confirmed(
        self, client, http, signer
    ):
        envelope = signer.sign(confirmation())
        http.get(CERT_URL, body=signer.pem)
        http.get(envelope["SubscribeURL"], body="<ConfirmSubscriptionResponse/>")
        assert post_sns(client, envelope).status_code == 200

    @pytest.mark.parametrize("field", ["Message", "Timestamp", "TopicArn", "Subject"])
    def test_tampered_message_is_refused(self, client, http, signer, field):
        envelope = signer.sign(self.notification())
        envelope[field] += " (changed)"
        http.get(CERT_URL, body=signer.pem)
        response = post_sns(client, envelope, HTTP_X_AMZ_SNS_TOPIC_ARN=envelope["TopicArn"])
        assert response.status_code == 403
        assert "signature is not valid" in response.json()["error"]
        assert not WebhookCall.objects.exists()

    def test_tampered_subscribe_url_is_refused(self, client, http, signer):
        envelope = signer.sign(confirmation())
        envelope["SubscribeURL"] = envelope["SubscribeURL"].replace("Token=", "Token=x")
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, envelope).status_code == 403

    def test_signature_by_another_key_is_refused(self, client, http, signer):
        envelope = SNSSigner().sign(self.notification())
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, envelope).status_code == 403

    def test_signature_with_the_wrong_version_hash_is_refused(self, client, http, signer):
        envelope = signer.sign(self.notification(), version="1")
        envelope["SignatureVersion"] = "2"
        http.get(CERT_URL, body=signer.pem)
        assert post_sns(client, envelope).status_code == 403

    @pytest.mark.parametrize("signature", [None, "", "not base64!"])
    def test_missing_or_garbled_signature_is_refused(self, client, http, signer, signature):
        envelope = signer.sign(self.notification())
        if signature is None:
            del envelope["Signature"]
        else:
            envelope["Signature"] = signature
        response = post_sns(client, envelope)
        assert response.status_code == 403
        assert "no valid Signature" in response.json()["error"]

    def test_unknown_signature_version_is_refused(self, client, http, signer):
        envelope = signer.sign(self.notification())
        envelope["SignatureVersion"] = "3"
        response = post_sns(client, envelope)
        assert response.status_code == 403
        assert "SignatureVersion" in response.json()["error"]

    @pytest.mark.parametrize(
        "cert_url",
        [
            "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com.attacker.example/SimpleNotificationService.pem",
            "https://attacker.example/sns.us-east-1.amazonaws.com/SimpleNotificationService.pem",
            "https://sns.us-east-1.amazonaws.com@attacker.example/SimpleNotificationService.pem",
            "https://sns.us-east-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
            "https://s3.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.txt",
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem?x=1",
            "not a url",
        ],
    )
    def test_certificate_url_off_sns_is_refused_without_fetching(
        self, client, http, signer, cert_url
    ):
        response = post_sns(client, signer.sign(self.notification(), cert_url=cert_url))
        assert response.status_code == 403
        assert "SigningCertURL" in response.json()["error"]
        assert len(http.calls) == 0

    def test_china_region_certificate_url_is_allowed(self, client, http, signer):
        cert_url = "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"
        http.get(cert_url, body=signer.pem)
        assert (
            post_sns(client, signer.sign(self.notification(), cert_url=cert_url)).status_code == 200
        )

    def test_certificate_is_fetched_once_and_cached(self, client, http, signer):
        http.get(CERT_URL, body=signer.pem)
        for number in range(3):
            envelope = sns_notification(fixture("event_delivery.json"), message_id=f"sns-{number}")
            assert post_sns(client, signer.sign(envelope)).status_code == 200
        assert len(http.calls) == 1
        assert Event.objects.count() == 3

    def test_certificate_url_that_serves_no_certificate_is_refused(self, client, http, signer):
        http.get(CERT_URL, body="<html>Not here</html>")
        response = post_sns(client, signer.sign(self.notification()))
        assert response.status_code == 403
        assert "PEM X.509 certificate" in response.json()["error"]

    def test_certificate_url_not_found_is_refused(self, client, http, signer):
        http.get(CERT_URL, status=404)
        assert post_sns(client, signer.sign(self.notification())).status_code == 403

    def test_expired_certificate_is_refused(self, client, http):
        now = datetime.now(UTC)
        expired = SNSSigner(
            valid_from=now - timedelta(days=400), valid_until=now - timedelta(days=1)
        )
        http.get(CERT_URL, body=expired.pem)
        response = post_sns(client, expired.sign(self.notification()))
        assert response.status_code == 403
        assert "not valid now" in response.json()["error"]

    def test_certificate_fetch_failure_is_503_so_sns_retries(self, client, http, signer):
        http.get(CERT_URL, body=requests.ConnectionError("connection refused"))
        response = post_sns(client, signer.sign(self.notification()))
        assert response.status_code == 503
        assert "signing certificate" in response.json()["error"]
        assert not Event.objects.exists()
        # Unverified: nothing is stored (reprocessing skips signature checks), SNS retries
        assert not WebhookCall.objects.exists()

    def test_certificate_server_error_is_503_so_sns_retries(self, client, http, signer):
        http.get(CERT_URL, status=502)
        response = post_sns(client, signer.sign(self.notification()))
        assert response.status_code == 503
        assert "SNS answered 502" in response.json()["error"]
