"""SparkPost backend: the exact Transmissions API request, response parsing, errors."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
import responses
from django.core.mail import send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.sparkpost.EmailBackend"
API_URL = "https://api.sparkpost.com/api/v1/transmissions"
API_KEY = "fake-sparkpost-api-key"
TRANSMISSION_ID = "11668787484950529"


@pytest.fixture
def sparkpost(settings, use_backend):
    settings.ANYMAIL = {"SPARKPOST_API_KEY": API_KEY}
    use_backend(BACKEND)


def results(accepted=1, rejected=0, transmission_id=TRANSMISSION_ID):
    return {
        "results": {
            "total_rejected_recipients": rejected,
            "total_accepted_recipients": accepted,
            "id": transmission_id,
        }
    }


def add_success(http, accepted=1, url=API_URL):
    http.add(responses.POST, url, json=results(accepted=accepted), status=200)


def sparkpost_error(message, code, description=None):
    error = {"message": message, "code": code}
    if description is not None:
        error["description"] = description
    return {"errors": [error]}


def message(**kwargs):
    defaults = {
        "subject": "Subject here",
        "body": "Text body here",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


# Requests


def test_plain_send_posts_exact_request(sparkpost, http):
    add_success(http)

    sent = send_mail("Subject here", "Text body here", "from@example.com", ["to@example.com"])

    assert sent == 1
    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == API_URL
    assert request.headers["Authorization"] == API_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert "X-MSYS-SUBACCOUNT" not in request.headers
    assert request_json(http.calls[0]) == {
        "recipients": [{"address": {"email": "to@example.com"}}],
        "content": {
            "from": {"email": "from@example.com"},
            "subject": "Subject here",
            "text": "Text body here",
        },
    }


def test_full_featured_message_body(sparkpost, http):
    add_success(http, accepted=4)
    msg = message(
        from_email="Sender <from@example.com>",
        to=["Recipient <to@example.com>", "to2@example.com"],
        cc=["Copy <cc@example.com>"],
        bcc=["bcc@example.com"],
        reply_to=["Help <help@example.com>"],
        headers={"X-Custom": "custom value"},
        envelope_sender="bounces@bounce.example.com",
        tags=["welcome"],
        metadata={"user_id": "12345", "plan": "pro"},
        track_clicks=True,
        track_opens=False,
        send_at=datetime(2025, 6, 1, 12, 30, 15, 999, tzinfo=timezone(timedelta(hours=2))),
        merge_global_data={"product": "Widget"},
        esp_extra={"options": {"transactional": True}, "description": "Welcome mail"},
    )
    msg.attach_alternative("<p>HTML body <img src='cid:logo'></p>", "text/html")
    msg.attach_alternative("<html amp4email></html>", "text/x-amp-html")
    msg.attach("invoice.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = msg.attach_inline_image(b"GIF89a fake", filename="logo.gif")

    msg.send()

    to_header = "Recipient <to@example.com>, to2@example.com"
    assert request_json(http.calls[0]) == {
        "recipients": [
            {
                "address": {
                    "email": "to@example.com",
                    "name": "Recipient",
                    "header_to": to_header,
                }
            },
            {"address": {"email": "to2@example.com", "header_to": to_header}},
            {"address": {"email": "cc@example.com", "name": "Copy", "header_to": to_header}},
            {"address": {"email": "bcc@example.com", "header_to": to_header}},
        ],
        "content": {
            "from": {"email": "from@example.com", "name": "Sender"},
            "subject": "Subject here",
            "reply_to": "Help <help@example.com>",
            "headers": {"X-Custom": "custom value", "CC": "Copy <cc@example.com>"},
            "text": "Text body here",
            "html": "<p>HTML body <img src='cid:logo'></p>",
            "amp_html": "<html amp4email></html>",
            "attachments": [
                {"name": "invoice.pdf", "type": "application/pdf", "data": "JVBERi0xLjQgZmFrZQ=="}
            ],
            "inline_images": [{"name": cid, "type": "image/gif", "data": "R0lGODlhIGZha2U="}],
        },
        "return_path": "bounces@bounce.example.com",
        "campaign_id": "welcome",
        "metadata": {"user_id": "12345", "plan": "pro"},
        "substitution_data": {"product": "Widget"},
        "description": "Welcome mail",
        "options": {
            "start_time": "2025-06-01T12:30:15+02:00",
            "click_tracking": True,
            "open_tracking": False,
            "transactional": True,
        },
    }


def test_single_recipient_with_bcc_shows_only_the_to_address(sparkpost, http):
    add_success(http, accepted=2)

    message(bcc=["bcc@example.com"]).send()

    assert request_json(http.calls[0])["recipients"] == [
        {"address": {"email": "to@example.com", "header_to": "to@example.com"}},
        {"address": {"email": "bcc@example.com", "header_to": "to@example.com"}},
    ]


def test_batch_send_gives_each_recipient_its_data(sparkpost, http):
    add_success(http, accepted=2)
    msg = message(
        to=["Alice <alice@example.com>", "bob@example.com"],
        merge_data={
            "alice@example.com": {"name": "Alice", "order": "A1"},
            "bob@example.com": {"name": "Bob"},
        },
        merge_global_data={"shop": "Example Shop"},
        merge_metadata={
            "alice@example.com": {"customer": "1"},
            "bob@example.com": {"customer": "2"},
        },
        metadata={"campaign": "june"},
    )

    msg.send()

    body = request_json(http.calls[0])
    assert body["recipients"] == [
        {
            "address": {"email": "alice@example.com", "name": "Alice"},
            "substitution_data": {"name": "Alice", "order": "A1"},
            "metadata": {"customer": "1"},
        },
        {
            "address": {"email": "bob@example.com"},
            "substitution_data": {"name": "Bob"},
            "metadata": {"customer": "2"},
        },
    ]
    assert body["substitution_data"] == {"shop": "Example Shop"}
    assert body["metadata"] == {"campaign": "june"}
    assert_recorded(
        status="sent",
        esp="sparkpost",
        recipients={
            "alice@example.com": ("queued", TRANSMISSION_ID),
            "bob@example.com": ("queued", TRANSMISSION_ID),
        },
    )


def test_batch_recipient_without_merge_data_gets_global_data_only(sparkpost, http):
    add_success(http, accepted=2)

    message(
        to=["alice@example.com", "bob@example.com"],
        merge_data={"alice@example.com": {"name": "Alice"}},
    ).send()

    assert request_json(http.calls[0])["recipients"][1] == {"address": {"email": "bob@example.com"}}


def test_stored_template_sends_only_template_id_as_content(sparkpost, http):
    add_success(http, accepted=2)
    msg = AnymailMessage(
        from_email="from@example.com",
        to=["alice@example.com", "bob@example.com"],
        template_id="welcome-email",
        merge_data={"alice@example.com": {"name": "Alice"}, "bob@example.com": {"name": "Bob"}},
        merge_global_data={"shop": "Example Shop"},
    )

    msg.send()

    assert request_json(http.calls[0]) == {
        "recipients": [
            {"address": {"email": "alice@example.com"}, "substitution_data": {"name": "Alice"}},
            {"address": {"email": "bob@example.com"}, "substitution_data": {"name": "Bob"}},
        ],
        "content": {"template_id": "welcome-email"},
        "substitution_data": {"shop": "Example Shop"},
    }


def test_esp_extra_can_replace_template_content_options(sparkpost, http):
    add_success(http)

    AnymailMessage(
        from_email="from@example.com",
        to=["to@example.com"],
        template_id="welcome-email",
        esp_extra={"content": {"use_draft_template": True}},
    ).send()

    assert request_json(http.calls[0])["content"] == {
        "template_id": "welcome-email",
        "use_draft_template": True,
    }


def test_eu_api_url_without_trailing_slash(settings, use_backend, http):
    settings.ANYMAIL = {
        "SPARKPOST_API_KEY": API_KEY,
        "SPARKPOST_API_URL": "https://api.eu.sparkpost.com/api/v1",
    }
    use_backend(BACKEND)
    add_success(http, url="https://api.eu.sparkpost.com/api/v1/transmissions")

    message().send()

    assert http.calls[0].request.url == "https://api.eu.sparkpost.com/api/v1/transmissions"


def test_subaccount_setting_sends_subaccount_header(settings, use_backend, http):
    settings.ANYMAIL = {"SPARKPOST_API_KEY": API_KEY, "SPARKPOST_SUBACCOUNT": 123}
    use_backend(BACKEND)
    add_success(http)

    message().send()

    assert http.calls[0].request.headers["X-MSYS-SUBACCOUNT"] == "123"


def test_bare_api_key_setting_is_accepted(settings, use_backend, http):
    settings.ANYMAIL = {}
    settings.SPARKPOST_API_KEY = "bare-fake-key"
    use_backend(BACKEND)
    add_success(http)

    message().send()

    assert http.calls[0].request.headers["Authorization"] == "bare-fake-key"


def test_unserializable_metadata_raises_serialization_error(sparkpost, http):
    with pytest.raises(AnymailSerializationError, match="SparkPost"):
        message(metadata={"when": datetime(2025, 1, 1)}).send()
    assert len(http.calls) == 0


# Response parsing and recording


def test_all_recipients_accepted_are_queued_with_transmission_id(sparkpost, http):
    add_success(http, accepted=2)
    msg = message(to=["to@example.com"], cc=["cc@example.com"])

    msg.send()

    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == TRANSMISSION_ID
    assert_recorded(
        status="sent",
        esp="sparkpost",
        recipients={
            "to@example.com": ("queued", TRANSMISSION_ID),
            "cc@example.com": ("queued", TRANSMISSION_ID),
        },
    )


def test_some_recipients_rejected_makes_every_status_unknown(sparkpost, http):
    http.add(responses.POST, API_URL, json=results(accepted=1, rejected=1))
    msg = message(to=["to@example.com", "bad@example.com"])

    msg.send()

    assert msg.anymail_status.status == {"unknown"}
    assert msg.anymail_status.message_id == TRANSMISSION_ID
    assert_recorded(status="unknown", esp="sparkpost")


def test_every_recipient_rejected_raises_recipients_refused(sparkpost, http):
    http.add(responses.POST, API_URL, json=results(accepted=0, rejected=1))
    msg = message()

    with pytest.raises(AnymailRecipientsRefused):
        msg.send()

    assert msg.anymail_status.status == {"rejected"}
    assert_recorded(
        status="rejected",
        esp="sparkpost",
        recipients={"to@example.com": ("rejected", TRANSMISSION_ID)},
    )


def test_response_without_results_is_an_api_error(sparkpost, http):
    http.add(responses.POST, API_URL, json={"unexpected": []})

    with pytest.raises(AnymailAPIError, match="Invalid SparkPost API response format"):
        message().send()
    assert_recorded(status="failed", esp="sparkpost", error_contains="Invalid SparkPost API")


def test_non_json_success_body_is_an_api_error(sparkpost, http):
    http.add(responses.POST, API_URL, body="accepted", status=200)

    with pytest.raises(AnymailAPIError, match="Invalid JSON in SparkPost API response"):
        message().send()
    assert_recorded(status="failed", esp="sparkpost", error_contains="Invalid JSON")


def test_no_store_sends_without_touching_the_database(
    sparkpost, no_store, http, django_assert_num_queries
):
    add_success(http)
    msg = message()

    with django_assert_num_queries(0):
        msg.send()

    assert msg.anymail_status.message_id == TRANSMISSION_ID


# Errors


def test_validation_error_text_reaches_caller_and_record(sparkpost, http):
    http.add(
        responses.POST,
        API_URL,
        status=400,
        json=sparkpost_error(
            "Invalid data",
            "1200",
            "Unconfigured Sending Domain <example.com>",
        ),
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 400
    assert isinstance(excinfo.value, requests.HTTPError)
    assert "Unconfigured Sending Domain <example.com>" in str(excinfo.value)
    assert_recorded(
        status="failed",
        esp="sparkpost",
        error_contains="Unconfigured Sending Domain <example.com>",
        recipients={"to@example.com": ("failed", "")},
    )


def test_message_generation_rejected_is_an_api_error(sparkpost, http):
    http.add(
        responses.POST,
        API_URL,
        status=400,
        json=sparkpost_error(
            "Message generation rejected",
            "1902",
            "recipient address suppressed due to customer policy",
        ),
    )

    with pytest.raises(AnymailAPIError, match="Message generation rejected"):
        message().send()


def test_authentication_failure_is_an_api_error(sparkpost, http):
    http.add(responses.POST, API_URL, status=401, json=sparkpost_error("Unauthorized.", "1000"))

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 401
    assert_recorded(status="failed", esp="sparkpost", error_contains="Unauthorized.")


def test_forbidden_is_an_api_error(sparkpost, http):
    http.add(responses.POST, API_URL, status=403, json=sparkpost_error("Forbidden.", "1100"))

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 403
    assert "Forbidden." in str(excinfo.value)


@pytest.mark.parametrize("status", [420, 429])
def test_rate_and_sending_limits_are_api_errors(sparkpost, http, status):
    http.add(
        responses.POST,
        API_URL,
        status=status,
        json=sparkpost_error("Exceed Sending Limit (daily)", "2102"),
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == status
    assert_recorded(status="failed", esp="sparkpost", error_contains="Exceed Sending Limit")


def test_server_error_is_an_api_error(sparkpost, http):
    http.add(responses.POST, API_URL, status=503, body="upstream unavailable")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 503
    assert_recorded(status="failed", esp="sparkpost", error_contains="upstream unavailable")


@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("slow")])
def test_connection_problems_are_api_errors(sparkpost, http, error):
    http.add(responses.POST, API_URL, body=error)

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert isinstance(excinfo.value.__cause__, type(error))
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="sparkpost", error_contains=API_URL)


# Settings


def test_missing_api_key_names_the_setting(settings):
    settings.ANYMAIL = {}

    with pytest.raises(AnymailConfigurationError, match="SPARKPOST_API_KEY"):
        make_backend(BACKEND)


def test_api_key_can_be_a_backend_option(settings, http):
    settings.ANYMAIL = {}
    add_success(http)
    backend = make_backend(BACKEND, api_key="option-fake-key")

    backend.send_messages([message()])

    assert http.calls[0].request.headers["Authorization"] == "option-fake-key"


# Unsupported and limited features


def test_multiple_tags_are_unsupported(sparkpost, http):
    with pytest.raises(AnymailUnsupportedFeature, match="multiple tags"):
        message(tags=["one", "two"]).send()
    assert len(http.calls) == 0


def test_merge_headers_are_unsupported(sparkpost, http):
    with pytest.raises(AnymailUnsupportedFeature, match="merge_headers"):
        message(merge_headers={"to@example.com": {"X-Id": "1"}}).send()


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"subject": "Overrides template"}, "subject with template_id"),
        ({"body": "Overrides template"}, "text with template_id"),
        ({"reply_to": ["help@example.com"]}, "reply_to with template_id"),
        ({"headers": {"X-Custom": "1"}}, "extra_headers with template_id"),
        ({"attachments": [("a.txt", "text", "text/plain")]}, "attachments with template_id"),
    ],
)
def test_content_with_template_id_is_unsupported(sparkpost, http, attrs, feature):
    msg = AnymailMessage(
        from_email="from@example.com", to=["to@example.com"], template_id="welcome", **attrs
    )

    with pytest.raises(AnymailUnsupportedFeature, match=feature):
        msg.send()
    assert len(http.calls) == 0


def test_ignored_unsupported_features_send_what_sparkpost_takes(settings, use_backend, http):
    settings.ANYMAIL = {"SPARKPOST_API_KEY": API_KEY, "IGNORE_UNSUPPORTED_FEATURES": True}
    use_backend(BACKEND)
    add_success(http)

    message(tags=["first", "second"], template_id="welcome").send()

    body = request_json(http.calls[0])
    assert body["campaign_id"] == "first"
    assert body["content"] == {"template_id": "welcome"}


def test_send_at_is_sent_as_utc_offset_for_utc_times(sparkpost, http):
    add_success(http)

    message(send_at=datetime(2025, 6, 1, 8, 0, tzinfo=UTC)).send()

    assert request_json(http.calls[0])["options"] == {"start_time": "2025-06-01T08:00:00+00:00"}
