"""The Brevo backend (and its deprecated SendinBlue alias) against Brevo's transactional API v3."""

from datetime import UTC, datetime

import pytest
import requests
from django.core.mail import send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailDeprecationWarning,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.brevo.EmailBackend"
SENDINBLUE_BACKEND = "sending.backends.sendinblue.EmailBackend"
SEND_URL = "https://api.brevo.com/v3/smtp/email"
API_KEY = "xkeysib-test-not-a-real-key"
MESSAGE_ID = "<202501151230.12345678901@smtp-relay.mailin.fr>"


@pytest.fixture
def brevo(settings, use_backend):
    settings.ANYMAIL = {"BREVO_API_KEY": API_KEY}
    use_backend(BACKEND)


def accept(http, json=None, status=201):
    """Answer the send call the way Brevo does on success."""
    http.post(SEND_URL, status=status, json=json if json is not None else {"messageId": MESSAGE_ID})


def message(**kwargs):
    fields = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**fields, **kwargs})


def sent_json(http):
    (call,) = http.calls
    return request_json(call)


# Requests


def test_plain_message_posts_json_with_api_key(brevo, http):
    accept(http)
    message().send()

    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    assert request.headers["api-key"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request_json(http.calls[0]) == {
        "sender": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "subject": "Subject",
        "textContent": "Text body",
    }


def test_send_mail_with_display_names_and_html(brevo, http):
    accept(http)
    send_mail(
        "Subject",
        "Text body",
        "From Name <from@example.com>",
        ['"Recipient, Esq." <to@example.com>'],
        html_message="<p>HTML body</p>",
    )
    assert sent_json(http) == {
        "sender": {"email": "from@example.com", "name": "From Name"},
        "to": [{"email": "to@example.com", "name": "Recipient, Esq."}],
        "subject": "Subject",
        "textContent": "Text body",
        "htmlContent": "<p>HTML body</p>",
    }


def test_full_featured_message(brevo, http):
    accept(http)
    msg = message(
        cc=["cc@example.com"],
        bcc=["Blind <bcc@example.com>"],
        reply_to=["Replies <reply@example.com>"],
        headers={"X-Custom": "custom value", "Idempotency-Key": "b52dbf-81dd"},
        tags=["welcome", "onboarding"],
        metadata={"user_id": 12345, "plan": "pro"},
        send_at=datetime(2030, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        esp_extra={"batchId": "275d3289-d5cb-4768-9460-a990054b6c81"},
    )
    msg.attach_alternative("<p>HTML body</p>", "text/html")
    msg.attach("report.pdf", b"%PDF-1.4 content", "application/pdf")
    msg.send()

    assert sent_json(http) == {
        "sender": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"email": "bcc@example.com", "name": "Blind"}],
        "replyTo": {"email": "reply@example.com", "name": "Replies"},
        "subject": "Subject",
        "textContent": "Text body",
        "htmlContent": "<p>HTML body</p>",
        "attachment": [{"content": "JVBERi0xLjQgY29udGVudA==", "name": "report.pdf"}],
        "headers": {
            "X-Custom": "custom value",
            "Idempotency-Key": "b52dbf-81dd",
            "X-Mailin-custom": '{"user_id": 12345, "plan": "pro"}',
        },
        "tags": ["welcome", "onboarding"],
        "scheduledAt": "2030-05-06T07:08:09.123Z",
        "batchId": "275d3289-d5cb-4768-9460-a990054b6c81",
    }


def test_success_records_every_recipient_queued_with_the_message_id(brevo, http):
    accept(http)
    msg = message(to=["to@example.com"], cc=["cc@example.com"], bcc=["bcc@example.com"])
    msg.send()

    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == MESSAGE_ID
    assert_recorded(
        status="sent",
        esp="brevo",
        recipients={
            "to@example.com": ("queued", MESSAGE_ID),
            "cc@example.com": ("queued", MESSAGE_ID),
            "bcc@example.com": ("queued", MESSAGE_ID),
        },
    )


def test_html_only_message_sends_no_text_content(brevo, http):
    accept(http)
    msg = message(body="<p>HTML only</p>")
    msg.content_subtype = "html"
    msg.send()
    body = sent_json(http)
    assert body["htmlContent"] == "<p>HTML only</p>"
    assert "textContent" not in body


def test_attachment_without_name_is_named_for_its_type(brevo, http):
    accept(http)
    msg = message()
    msg.attach(None, b"a,b\n1,2\n", "text/csv")
    msg.send()
    assert sent_json(http)["attachment"] == [{"content": "YSxiCjEsMgo=", "name": "attachment.csv"}]


def test_esp_extra_merges_deeply(brevo, http):
    accept(http)
    message(
        headers={"X-Custom": "custom value"},
        esp_extra={"headers": {"sender.ip": "1.2.3.4"}, "subject": "Override"},
    ).send()
    body = sent_json(http)
    assert body["headers"] == {"X-Custom": "custom value", "sender.ip": "1.2.3.4"}
    assert body["subject"] == "Override"


def test_api_url_setting_changes_the_endpoint(settings, use_backend, http):
    settings.ANYMAIL = {"BREVO_API_KEY": API_KEY, "BREVO_API_URL": "https://proxy.example.com/v3"}
    use_backend(BACKEND)
    http.post("https://proxy.example.com/v3/smtp/email", status=201, json={"messageId": MESSAGE_ID})
    message().send()
    assert len(http.calls) == 1


# Templates and batch sends


def test_stored_template_uses_global_merge_data_as_params(brevo, http):
    accept(http)
    msg = message(subject=None, body=None, template_id="7")
    msg.from_email = None  # use the template's sender
    msg.merge_global_data = {"order_no": "12345", "ship_date": "May 15"}
    msg.send()
    assert sent_json(http) == {
        "to": [{"email": "to@example.com"}],
        "templateId": 7,
        "params": {"order_no": "12345", "ship_date": "May 15"},
    }


def test_batch_send_makes_one_version_per_to_recipient(brevo, http):
    accept(
        http,
        json={"messageIds": ["<id-alice@smtp-relay.mailin.fr>", "<id-bob@smtp-relay.mailin.fr>"]},
    )
    msg = message(
        to=["alice@example.com", "Bob <bob@example.com>"],
        cc=["cc@example.com"],
        template_id=7,
        merge_data={
            "alice@example.com": {"name": "Alice", "order_no": "12345"},
            "bob@example.com": {"name": "Bob"},
        },
        merge_global_data={"ship_date": "May 15", "name": "Customer"},
    )
    msg.send()

    assert sent_json(http) == {
        "sender": {"email": "from@example.com"},
        "cc": [{"email": "cc@example.com"}],
        "subject": "Subject",
        "textContent": "Text body",
        "templateId": 7,
        "messageVersions": [
            {
                "to": [{"email": "alice@example.com"}],
                "params": {"ship_date": "May 15", "name": "Alice", "order_no": "12345"},
            },
            {
                "to": [{"email": "bob@example.com", "name": "Bob"}],
                "params": {"ship_date": "May 15", "name": "Bob"},
            },
        ],
    }
    assert msg.anymail_status.message_id == {
        "<id-alice@smtp-relay.mailin.fr>",
        "<id-bob@smtp-relay.mailin.fr>",
    }
    assert_recorded(
        status="sent",
        esp="brevo",
        recipients={
            "alice@example.com": ("queued", "<id-alice@smtp-relay.mailin.fr>"),
            "bob@example.com": ("queued", "<id-bob@smtp-relay.mailin.fr>"),
            # cc gets a copy of every version: no one id is its own
            "cc@example.com": ("queued", ""),
        },
    )


def test_batch_recipient_without_merge_data_gets_no_params(brevo, http):
    accept(http, json={"messageIds": ["<id-1@smtp-relay.mailin.fr>"]})
    message(merge_data={}).send()
    assert sent_json(http)["messageVersions"] == [{"to": [{"email": "to@example.com"}]}]


def test_batch_response_with_wrong_id_count_is_an_api_error(brevo, http):
    accept(http, json={"messageIds": ["<only-one@smtp-relay.mailin.fr>"]})
    msg = message(to=["a@example.com", "b@example.com"], merge_data={"a@example.com": {"x": 1}})
    with pytest.raises(AnymailAPIError, match="Expected 2 messageIds"):
        msg.send()
    assert_recorded(status="failed", esp="brevo", error_contains="Expected 2 messageIds")


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"track_clicks": True}, "track_clicks"),
        ({"track_opens": False}, "track_opens"),
        ({"envelope_sender": "bounces@example.com"}, "envelope_sender"),
        ({"merge_metadata": {"to@example.com": {"a": 1}}}, "merge_metadata"),
        ({"merge_headers": {"to@example.com": {"X-A": "1"}}}, "merge_headers"),
        ({"reply_to": ["one@example.com", "two@example.com"]}, "multiple reply_to addresses"),
    ],
)
def test_unsupported_feature_raises_naming_it(brevo, http, attrs, feature):
    with pytest.raises(AnymailUnsupportedFeature, match=f"Brevo does not support {feature}"):
        message(**attrs).send()
    assert not Message.objects.exists()


def test_amp_body_is_unsupported(brevo, http):
    msg = message()
    msg.attach_alternative("<html amp4email>...</html>", "text/x-amp-html")
    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML body"):
        msg.send()


def test_inline_image_is_unsupported(brevo, http):
    msg = message()
    msg.attach_inline_image(b"\x89PNG\r\n\x1a\n", "logo.png")
    with pytest.raises(AnymailUnsupportedFeature, match="inline attachments"):
        msg.send()


def test_ignored_unsupported_features_send_what_brevo_can(settings, use_backend, http):
    settings.ANYMAIL = {"BREVO_API_KEY": API_KEY, "IGNORE_UNSUPPORTED_FEATURES": True}
    use_backend(BACKEND)
    accept(http)
    msg = message(
        reply_to=["one@example.com", "two@example.com"],
        track_clicks=True,
        envelope_sender="bounces@example.com",
    )
    msg.attach_inline_image(b"\x89PNG\r\n\x1a\n", "logo.png")
    msg.send()
    body = sent_json(http)
    assert body["replyTo"] == {"email": "one@example.com"}
    assert body["attachment"] == [{"content": "iVBORw0KGgo=", "name": "logo.png"}]
    assert msg.anymail_status.status == {"queued"}


# Configuration


def test_missing_api_key_names_the_setting(settings, use_backend):
    settings.ANYMAIL = {}
    use_backend(BACKEND)
    with pytest.raises(AnymailConfigurationError, match="BREVO_API_KEY"):
        message().send()


def test_bare_api_key_setting_is_accepted(settings, use_backend, http):
    settings.ANYMAIL = {}
    settings.BREVO_API_KEY = "xkeysib-bare-setting"
    use_backend(BACKEND)
    accept(http)
    message().send()
    assert http.calls[0].request.headers["api-key"] == "xkeysib-bare-setting"


def test_unserializable_metadata_raises_serialization_error(brevo, http):
    with pytest.raises(AnymailSerializationError):
        message(metadata={"when": datetime(2030, 1, 1)}).send()
    assert_recorded(status="failed", esp="brevo")


# Errors


def test_unauthorized_is_an_api_error_with_brevo_text(brevo, http):
    http.post(SEND_URL, status=401, json={"code": "unauthorized", "message": "Key not found"})
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    error = excinfo.value
    assert isinstance(error, requests.HTTPError)
    assert error.status_code == 401
    assert "Key not found" in str(error)
    assert_recorded(status="failed", esp="brevo", error_contains="Key not found")


def test_invalid_parameter_is_an_api_error_with_brevo_text(brevo, http):
    http.post(
        SEND_URL,
        status=400,
        json={
            "code": "missing_parameter",
            "message": "Either of htmlContent or textContent is required",
        },
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        message(body="").send()
    assert excinfo.value.status_code == 400
    assert "Either of htmlContent or textContent is required" in str(excinfo.value)
    assert_recorded(
        status="failed", esp="brevo", error_contains="Either of htmlContent or textContent"
    )


def test_rate_limit_is_an_api_error(brevo, http):
    http.post(
        SEND_URL,
        status=429,
        json={"code": "too_many_requests", "message": "The expected rate limit is exceeded."},
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="brevo", error_contains="rate limit is exceeded")


def test_server_error_is_an_api_error(brevo, http):
    http.post(SEND_URL, status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 502
    assert_recorded(status="failed", esp="brevo", error_contains="Bad Gateway")


def test_non_json_success_body_is_an_api_error(brevo, http):
    http.post(SEND_URL, status=201, body="<html>not json</html>")
    with pytest.raises(AnymailAPIError, match="Invalid JSON in Brevo API response"):
        message().send()
    assert_recorded(status="failed", esp="brevo", error_contains="Invalid JSON")


def test_success_without_message_id_is_an_api_error(brevo, http):
    accept(http, json={})
    with pytest.raises(AnymailAPIError, match="No messageId"):
        message().send()


@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("slow")])
def test_connection_errors_are_api_errors(brevo, http, error):
    http.post(SEND_URL, body=error)
    with pytest.raises(
        AnymailAPIError, match="Error posting to https://api.brevo.com/v3/smtp/email"
    ):
        message().send()
    assert_recorded(status="failed", esp="brevo", error_contains=type(error).__name__)


def test_fail_silently_swallows_api_errors(brevo, http):
    http.post(SEND_URL, status=401, json={"code": "unauthorized", "message": "Key not found"})
    assert message().send(fail_silently=True) == 0


# Recording off


def test_recording_off_sends_without_touching_the_database(
    brevo, http, no_store, django_assert_num_queries
):
    accept(http)
    msg = message()
    with django_assert_num_queries(0):
        msg.send()
    assert msg.anymail_status.status == {"queued"}
    assert not Message.objects.exists()


# The SendinBlue alias


def test_sendinblue_alias_warns_and_keeps_sendinblue_settings(settings, use_backend, http):
    settings.ANYMAIL = {"SENDINBLUE_API_KEY": "xkeysib-old-setting"}
    use_backend(SENDINBLUE_BACKEND)
    accept(http)
    with pytest.warns(AnymailDeprecationWarning, match=r"sending\.backends\.brevo.*BREVO_API_KEY"):
        message().send()
    assert http.calls[0].request.headers["api-key"] == "xkeysib-old-setting"
    assert_recorded(
        status="sent", esp="sendinblue", recipients={"to@example.com": ("queued", MESSAGE_ID)}
    )


def test_sendinblue_alias_missing_key_names_the_sendinblue_setting(settings, use_backend):
    settings.ANYMAIL = {"BREVO_API_KEY": API_KEY}
    use_backend(SENDINBLUE_BACKEND)
    with (
        pytest.warns(AnymailDeprecationWarning),
        pytest.raises(AnymailConfigurationError, match="SENDINBLUE_API_KEY"),
    ):
        message().send()


def test_sendinblue_alias_names_itself_in_unsupported_errors(settings, use_backend):
    settings.ANYMAIL = {"SENDINBLUE_API_KEY": API_KEY}
    use_backend(SENDINBLUE_BACKEND)
    with (
        pytest.warns(AnymailDeprecationWarning),
        pytest.raises(AnymailUnsupportedFeature, match="SendinBlue does not support track_opens"),
    ):
        message(track_opens=True).send()
