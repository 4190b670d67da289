"""The Brevo tracking webhook (and its SendinBlue alias): events, batches, auth and bad input."""

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from sending.exceptions import (
    AnymailConfigurationError,
    AnymailDeprecationWarning,
    AnymailInsecureWebhookWarning,
)
from sending.message import AnymailMessage
from sending.models import Recipient, Suppression
from sending.signals import tracking
from tests.webhook_contract import (
    WEBHOOK_SECRET,
    EventSpec,
    TrackingWebhookContract,
    basic_auth,
    tracking_fixture_names,
)
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.brevo import BrevoTrackingWebhookView

pytestmark = pytest.mark.django_db

URL = "/anymail/brevo/tracking/"
SENDINBLUE_URL = "/anymail/sendinblue/tracking/"
FIXTURES = Path(__file__).parent / "fixtures" / "brevo"
# The fixtures' message: "<...>" as the send API's messageId (and the send backend) has it.
MESSAGE_ID = "<202611201159.12345678901@smtp-relay.mailin.fr>"
RECIPIENT = "recipient@example.com"
METADATA = {"order_id": "1234", "customer": 42}
TAGS = ["shipping", "transactional"]
NO_DEPRECATION_WARNINGS = pytest.mark.filterwarnings(
    "ignore::sending.exceptions.AnymailDeprecationWarning"
)

# Normalized event type -> the Brevo event that produces it (and its extra fields).
BREVO_EVENTS = {
    "queued": ("request", {}),
    "delivered": ("delivered", {"reason": "sent"}),
    "deferred": ("deferred", {"reason": "421 4.7.0 Try again later"}),
    "bounced": ("hard_bounce", {"reason": "550 5.1.1 User unknown"}),
    "rejected": ("blocked", {"reason": "blocked : due to blacklist user"}),
    "failed": ("error", {"reason": "Template error"}),
    "opened": ("opened", {"user_agent": "Mozilla/5.0"}),
    "clicked": ("click", {"link": "https://example.com/", "user_agent": "Mozilla/5.0"}),
    "complained": ("spam", {}),
    "unsubscribed": ("unsubscribed", {}),
}


def brevo_event(spec: EventSpec) -> dict:
    event, extra = BREVO_EVENTS[spec.event_type]
    epoch = spec.timestamp.timestamp()
    return {
        "event": event,
        "email": spec.recipient,
        "id": 1088452,
        "date": spec.timestamp.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S"),
        "ts": int(epoch),
        "message-id": spec.message_id,
        "ts_event": int(epoch),
        "subject": "Contract",
        "X-Mailin-custom": json.dumps({"spec": spec.event_id}),
        "sending_ip": "185.41.28.109",
        "ts_epoch": int(epoch * 1000),
        "tags": [],
        **extra,
    }


def brevo_body(events: list[EventSpec]) -> tuple[bytes, str]:
    # One event is posted as an object; a "batched" webhook posts an array.
    rendered = [brevo_event(spec) for spec in events]
    body = rendered[0] if len(rendered) == 1 else rendered
    return json.dumps(body).encode(), "application/json"


class TestBrevoWebhookContract(TrackingWebhookContract):
    esp = "brevo"
    message_id = "<202611201200.12345678901@smtp-relay.mailin.fr>"
    one_event_per_call = True

    def event_body(self, events: list[EventSpec]):
        return brevo_body(events)


@NO_DEPRECATION_WARNINGS
class TestSendinBlueWebhookContract(TrackingWebhookContract):
    esp = "sendinblue"
    message_id = "<202611201200.12345678901@smtp-relay.mailin.fr>"
    one_event_per_call = True

    def event_body(self, events: list[EventSpec]):
        return brevo_body(events)


# Helpers


@pytest.fixture(autouse=True)
def webhook_secret(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "WEBHOOK_SECRET": WEBHOOK_SECRET}


@pytest.fixture
def received():
    """The events the tracking signal delivered, with the esp_name it gave."""
    events = []

    def receiver(sender, event, esp_name, **kwargs):
        events.append((event, esp_name))

    tracking.connect(receiver, weak=False)
    yield events
    tracking.disconnect(receiver)


def fixture_body(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def post(client, body, content_type="application/json", url=URL, auth=None, **extra):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return client.generic(
        "POST",
        url,
        body,
        content_type=content_type,
        HTTP_AUTHORIZATION=auth or basic_auth(),
        **extra,
    )


def post_fixture(client, name: str):
    response = post(client, fixture_body(name))
    assert response.status_code == 200, response.content
    return response


# Each documented event type, from a real-shaped fixture

# fixture -> (event_type, reject_reason, description, mta_response, click_url, user_agent)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
EXPECTED = {
    "request": ("queued", None, None, None, None, None),
    "delivered": ("delivered", None, "sent", None, None, None),
    "deferred": (
        "deferred",
        None,
        "421 4.7.0 [TSS04] Messages from 185.41.28.109 temporarily deferred due to "
        "unexpected volume or user complaints",
        "421 4.7.0 [TSS04] Messages from 185.41.28.109 temporarily deferred due to "
        "unexpected volume or user complaints",
        None,
        None,
    ),
    "soft_bounce": (
        "bounced",
        "timed_out",
        "452 4.2.2 The email account that you tried to reach is over quota",
        "452 4.2.2 The email account that you tried to reach is over quota",
        None,
        None,
    ),
    "hard_bounce": (
        "bounced",
        "bounced",
        "550 5.1.1 The email account that you tried to reach does not exist",
        "550 5.1.1 The email account that you tried to reach does not exist",
        None,
        None,
    ),
    "invalid_email": ("bounced", "invalid", "Invalid email address", None, None, None),
    "blocked": ("rejected", "blocked", "blocked : due to blacklist user", None, None, None),
    "error": (
        "failed",
        None,
        "Template rendering error: unknown variable params.order",
        None,
        None,
        None,
    ),
    "spam": ("complained", None, None, None, None, None),
    "opened": ("opened", None, None, None, None, IPHONE),
    "unique_opened": ("opened", None, None, None, None, IPHONE),
    "proxy_open": ("opened", None, None, None, None, "Mozilla/5.0"),
    "unique_proxy_open": ("opened", None, None, None, None, "Mozilla/5.0"),
    "click": (
        "clicked",
        None,
        None,
        None,
        "https://shop.example.com/orders/1234?utm_source=brevo",
        IPHONE,
    ),
    "unsubscribed": ("unsubscribed", None, None, None, None, IPHONE),
}


def test_every_fixture_has_expectations():
    fixtures = tracking_fixture_names(FIXTURES)
    assert fixtures - {"batched", "inbound"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_event_is_normalized(client, received, name):
    raw = json.loads(fixture_body(name))
    post_fixture(client, name)

    event_type, reject_reason, description, mta_response, click_url, user_agent = EXPECTED[name]
    [(event, esp_name)] = received
    assert esp_name == "Brevo"
    assert event.event_type == event_type
    assert event.timestamp == datetime.fromtimestamp(raw["ts_epoch"] / 1000, tz=UTC)
    assert event.event_id is None  # Brevo's "id" is the webhook's
    assert (event.message_id, event.recipient) == (MESSAGE_ID, RECIPIENT)
    assert event.reject_reason == reject_reason
    assert event.description == description
    assert event.mta_response == mta_response
    assert event.click_url == click_url
    assert event.user_agent == user_agent
    assert event.tags == TAGS
    assert event.metadata == METADATA
    assert event.esp_event == raw

    stored = Event.objects.get()
    assert (stored.esp, stored.event_type, stored.timestamp) == (
        "brevo",
        event_type,
        event.timestamp,
    )
    assert (stored.message_id, stored.recipient_address) == (MESSAGE_ID, RECIPIENT)
    assert stored.reject_reason == (reject_reason or "")
    assert (stored.tags, stored.metadata, stored.esp_event) == (TAGS, METADATA, raw)


def test_timestamp_keeps_milliseconds(client, received):
    post_fixture(client, "unique_opened")
    post_fixture(client, "opened")
    first, second = (event.timestamp for event, _ in received)
    assert first == datetime(2026, 11, 20, 12, 5, 0, 74000, tzinfo=UTC)
    assert second - first == timedelta(milliseconds=1)


def test_events_link_to_the_message_the_backend_sent(client, settings, use_backend, http):
    settings.ANYMAIL = {**settings.ANYMAIL, "BREVO_API_KEY": "xkeysib-test"}
    use_backend("sending.backends.brevo.EmailBackend")
    http.post("https://api.brevo.com/v3/smtp/email", status=201, json={"messageId": MESSAGE_ID})
    message = AnymailMessage(
        "Shipped", "Body", "shop@example.com", [RECIPIENT], tags=TAGS, metadata=METADATA
    )
    message.send()
    assert message.anymail_status.message_id == MESSAGE_ID

    post_fixture(client, "delivered")
    post_fixture(client, "click")
    recipient = Recipient.objects.get(address=RECIPIENT)
    assert recipient.status == "clicked"
    assert recipient.delivered_at == datetime(2026, 11, 20, 12, 1, 0, 354000, tzinfo=UTC)
    assert recipient.click_count == 1
    assert Event.objects.filter(recipient=recipient).count() == 2


def test_hard_bounce_suppresses_the_address_but_soft_bounce_does_not(client):
    post_fixture(client, "soft_bounce")
    assert not Suppression.objects.exists()
    post_fixture(client, "hard_bounce")
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.reason) == (RECIPIENT, "bounced")


def test_invalid_email_suppresses_as_invalid(client):
    post_fixture(client, "invalid_email")
    assert Suppression.objects.get().reason == "invalid"


# Batched webhooks


def test_batched_payload_gives_one_event_per_item(client, received):
    post_fixture(client, "batched")
    assert [(event.event_type, event.recipient) for event, _ in received] == [
        ("queued", RECIPIENT),
        ("delivered", RECIPIENT),
        ("opened", RECIPIENT),
        ("bounced", "gone@example.org"),
    ]
    assert received[3][0].message_id == "<202611201159.98765432109@smtp-relay.mailin.fr>"
    assert Event.objects.count() == 4
    assert WebhookCall.objects.get().event_count == 4


def test_batched_resend_of_the_same_events_stores_nothing_twice(client):
    post_fixture(client, "batched")
    # The same events, one per call (a webhook switched from batched to single)
    for item in json.loads(fixture_body("batched")):
        assert post(client, item).status_code == 200
    assert Event.objects.count() == 4


def test_empty_batch_is_400(client):
    response = post(client, [])
    assert response.status_code == 400
    assert "empty list" in response.json()["error"]


# Field details


def test_message_id_without_angle_brackets_gets_them(client, received):
    raw = json.loads(fixture_body("delivered"))
    raw["message-id"] = "202611201159.12345678901@smtp-relay.mailin.fr"
    assert post(client, raw).status_code == 200
    assert received[0][0].message_id == MESSAGE_ID


def test_tags_fall_back_to_the_json_encoded_tag_field(client, received):
    raw = json.loads(fixture_body("delivered"))
    del raw["tags"]
    assert post(client, raw).status_code == 200
    assert received[0][0].tags == TAGS


def test_plain_tag_field_is_one_tag(client, received):
    raw = {**json.loads(fixture_body("delivered")), "tag": "welcome"}
    del raw["tags"]
    assert post(client, raw).status_code == 200
    assert received[0][0].tags == ["welcome"]


@pytest.mark.parametrize("custom", ["not json", '["a", "list"]', ""])
def test_custom_header_that_is_not_a_json_object_is_no_metadata(client, received, custom):
    raw = {**json.loads(fixture_body("delivered")), "X-Mailin-custom": custom}
    assert post(client, raw).status_code == 200
    assert received[0][0].metadata == {}


def test_timestamp_falls_back_to_seconds_then_the_cet_date(client, received):
    raw = json.loads(fixture_body("spam"))
    del raw["ts_epoch"]
    assert post(client, raw).status_code == 200
    del raw["ts"], raw["ts_event"]
    raw["subject"] = "a different body, so not a duplicate call"
    assert post(client, raw).status_code == 200
    # "date": "2026-11-20 13:30:00" is Paris time, an hour ahead of UTC in November
    expected = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
    assert [event.timestamp for event, _ in received] == [expected, expected]


def test_unknown_event_type_is_recorded_as_unknown(client, received):
    raw = {**json.loads(fixture_body("delivered")), "event": "some_future_event"}
    assert post(client, raw).status_code == 200
    assert received[0][0].event_type == "unknown"
    assert Event.objects.get().event_type == "unknown"


# Bad input


def test_malformed_json_is_400_and_kept(client):
    response = post(client, b'{"event": "delivered", ')
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert WebhookCall.objects.get().status == WebhookCallStatus.FAILED


def test_empty_body_is_400(client):
    response = post(client, b"")
    assert response.status_code == 400
    assert "Empty Brevo webhook body" in response.json()["error"]


def test_wrong_content_type_is_400(client):
    response = post(client, b"event=delivered", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_inbound_payload_is_400_pointing_at_the_inbound_url(client):
    response = post(client, fixture_body("inbound"))
    assert response.status_code == 400
    error = response.json()["error"]
    assert "inbound" in error
    assert "anymail/brevo/inbound/" in error


def test_another_esps_payload_is_400_saying_so(client):
    postmark = {"RecordType": "Delivery", "MessageID": "883953f4", "Recipient": RECIPIENT}
    response = post(client, postmark)
    assert response.status_code == 400
    error = response.json()["error"]
    assert 'no "event" field' in error
    assert "another ESP" in error


def test_non_object_event_is_400(client):
    response = post(client, ["delivered"])
    assert response.status_code == 400
    assert "JSON objects" in response.json()["error"]


def test_garbage_timestamp_is_400(client):
    raw = json.loads(fixture_body("spam"))
    del raw["ts_epoch"]
    raw["ts_event"] = "yesterday"
    response = post(client, raw)
    assert response.status_code == 400
    assert "Malformed Brevo" in response.json()["error"]


# Auth: Brevo doesn't sign its calls; basic auth (contract) or a bearer token


@pytest.fixture
def bearer_token(settings):
    anymail = {key: value for key, value in settings.ANYMAIL.items() if key != "WEBHOOK_SECRET"}
    settings.ANYMAIL = {**anymail, "BREVO_WEBHOOK_BEARER_TOKEN": "client-token"}


def test_bearer_token_is_accepted(client, bearer_token):
    response = post(client, fixture_body("delivered"), auth="Bearer client-token")
    assert response.status_code == 200
    assert Event.objects.count() == 1


@pytest.mark.parametrize("auth", ["Bearer wrong-token", "Bearer ", "client-token", basic_auth()])
def test_wrong_bearer_token_is_refused(client, bearer_token, auth):
    response = post(client, fixture_body("delivered"), auth=auth)
    assert response.status_code == 403
    assert "BREVO_WEBHOOK_BEARER_TOKEN" in response.json()["error"]
    assert not WebhookCall.objects.exists()


def test_missing_bearer_token_is_refused(client, bearer_token):
    response = client.generic("POST", URL, fixture_body("delivered"), "application/json")
    assert response.status_code == 403


def test_rotated_bearer_tokens_are_all_accepted(client, settings, bearer_token):
    settings.ANYMAIL = {**settings.ANYMAIL, "BREVO_WEBHOOK_BEARER_TOKEN": ["old", "new"]}
    assert post(client, fixture_body("delivered"), auth="Bearer old").status_code == 200
    assert post(client, fixture_body("click"), auth="Bearer new").status_code == 200


def test_bearer_token_and_basic_auth_together_are_a_configuration_error(settings):
    settings.ANYMAIL = {**settings.ANYMAIL, "BREVO_WEBHOOK_BEARER_TOKEN": "client-token"}
    with pytest.raises(AnymailConfigurationError, match="not both"):
        BrevoTrackingWebhookView()


def test_no_auth_configured_warns(settings):
    settings.ANYMAIL = {}
    with pytest.warns(AnymailInsecureWebhookWarning):
        BrevoTrackingWebhookView()


def test_bearer_token_alone_does_not_warn(settings, bearer_token):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BrevoTrackingWebhookView()


# The SendinBlue alias


def test_sendinblue_url_records_under_sendinblue_and_warns(client, received):
    with pytest.warns(AnymailDeprecationWarning, match="anymail/brevo/tracking/"):
        response = post(client, fixture_body("hard_bounce"), url=SENDINBLUE_URL)
    assert response.status_code == 200
    [(event, esp_name)] = received
    assert (esp_name, event.event_type, event.message_id) == ("SendinBlue", "bounced", MESSAGE_ID)
    assert Event.objects.get().esp == "sendinblue"
    assert WebhookCall.objects.get().esp == "sendinblue"


@NO_DEPRECATION_WARNINGS
def test_sendinblue_reads_sendinblue_settings(client, settings):
    settings.ANYMAIL = {"SENDINBLUE_WEBHOOK_BEARER_TOKEN": "old-setup"}
    response = post(client, fixture_body("delivered"), url=SENDINBLUE_URL, auth="Bearer old-setup")
    assert response.status_code == 200
