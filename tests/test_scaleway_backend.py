"""Scaleway Transactional Email backend: the exact API request, response parsing, errors."""

from datetime import UTC, datetime

import pytest
import requests
import responses
from django.core.mail import send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from tests.conftest import make_backend
from tests.helpers import assert_recorded, recorded_message, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.scaleway.EmailBackend"
API_URL = "https://api.scaleway.com/transactional-email/v1alpha1/regions/fr-par/emails"
SECRET_KEY = "fake-scaleway-secret-key"
PROJECT_ID = "0f5e0d2a-1111-4222-8333-444455556666"


@pytest.fixture
def scaleway(settings, use_backend):
    settings.ANYMAIL = {"SCALEWAY_SECRET_KEY": SECRET_KEY, "SCALEWAY_PROJECT_ID": PROJECT_ID}
    use_backend(BACKEND)


def tem_email(address, email_id, rcpt_type="to", status="new"):
    """One Email resource, as TEM's "Send an email" returns it."""
    return {
        "id": email_id,
        "message_id": f"{email_id}@tem.scaleway.example",
        "project_id": PROJECT_ID,
        "mail_from": "from@example.com",
        "rcpt_to": address,
        "mail_rcpt": address,
        "rcpt_type": rcpt_type,
        "subject": "Subject",
        "created_at": "2025-06-01T10:00:00.000000Z",
        "updated_at": "2025-06-01T10:00:00.000000Z",
        "status": status,
        "status_details": None,
        "try_count": 0,
        "last_tries": [],
        "flags": [],
    }


def add_success(http, *emails):
    http.add(responses.POST, API_URL, json={"emails": list(emails)}, status=200)


def message(**kwargs):
    defaults = {
        "subject": "Subject here",
        "body": "Text body here",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


# Requests


def test_plain_send_posts_exact_request(scaleway, http):
    add_success(http, tem_email("to@example.com", "e-1"))

    sent = send_mail("Subject here", "Text body here", "from@example.com", ["to@example.com"])

    assert sent == 1
    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == API_URL
    assert request.headers["X-Auth-Token"] == SECRET_KEY
    assert request.headers["Content-Type"] == "application/json"
    assert request_json(http.calls[0]) == {
        "project_id": PROJECT_ID,
        "from": {"email": "from@example.com"},
        "to": [{"email": "to@example.com"}],
        "subject": "Subject here",
        "text": "Text body here",
    }


def test_full_featured_message_body(scaleway, http):
    add_success(
        http,
        tem_email("to@example.com", "e-1"),
        tem_email("cc@example.com", "e-2", "cc"),
        tem_email("bcc@example.com", "e-3", "bcc"),
    )
    msg = message(
        from_email="Sender <from@example.com>",
        to=["Recipient <to@example.com>"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
        reply_to=["Help <help@example.com>", "other@example.com"],
        headers={"X-Custom": "custom value", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        esp_extra={"send_before": "2025-08-13T02:22:00Z"},
    )
    msg.attach_alternative("<p>HTML body</p>", "text/html")
    msg.attach("invoice.pdf", b"%PDF-1.4 fake", "application/pdf")

    msg.send()

    assert request_json(http.calls[0]) == {
        "project_id": PROJECT_ID,
        "from": {"email": "from@example.com", "name": "Sender"},
        "to": [{"email": "to@example.com", "name": "Recipient"}],
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"email": "bcc@example.com"}],
        "subject": "Subject here",
        "text": "Text body here",
        "html": "<p>HTML body</p>",
        "attachments": [
            {"name": "invoice.pdf", "type": "application/pdf", "content": "JVBERi0xLjQgZmFrZQ=="}
        ],
        "additional_headers": [
            {"key": "Reply-To", "value": "Help <help@example.com>, other@example.com"},
            {"key": "X-Custom", "value": "custom value"},
            {"key": "List-Unsubscribe", "value": "<mailto:unsub@example.com>"},
        ],
        "send_before": "2025-08-13T02:22:00Z",
    }


def test_region_setting_selects_regional_endpoint(settings, use_backend, http):
    settings.ANYMAIL = {
        "SCALEWAY_SECRET_KEY": SECRET_KEY,
        "SCALEWAY_PROJECT_ID": PROJECT_ID,
        "SCALEWAY_REGION": "nl-ams",
    }
    use_backend(BACKEND)
    url = "https://api.scaleway.com/transactional-email/v1alpha1/regions/nl-ams/emails"
    http.add(responses.POST, url, json={"emails": [tem_email("to@example.com", "e-1")]})

    message().send()

    assert http.calls[0].request.url == url


def test_api_url_setting_fills_in_region(settings, use_backend, http):
    settings.ANYMAIL = {
        "SCALEWAY_SECRET_KEY": SECRET_KEY,
        "SCALEWAY_PROJECT_ID": PROJECT_ID,
        "SCALEWAY_API_URL": "https://tem.example.test/v2/{region}",
    }
    use_backend(BACKEND)
    http.add(
        responses.POST,
        "https://tem.example.test/v2/fr-par/emails",
        json={"emails": [tem_email("to@example.com", "e-1")]},
    )

    message().send()

    assert http.calls[0].request.url == "https://tem.example.test/v2/fr-par/emails"


def test_bare_secret_key_setting_is_accepted(settings, use_backend, http):
    settings.ANYMAIL = {"SCALEWAY_PROJECT_ID": PROJECT_ID}
    settings.SCALEWAY_SECRET_KEY = "bare-fake-secret"
    use_backend(BACKEND)
    add_success(http, tem_email("to@example.com", "e-1"))

    message().send()

    assert http.calls[0].request.headers["X-Auth-Token"] == "bare-fake-secret"


def test_esp_extra_overrides_project_id(scaleway, http):
    add_success(http, tem_email("to@example.com", "e-1"))

    message(esp_extra={"project_id": "other-project"}).send()

    assert request_json(http.calls[0])["project_id"] == "other-project"


# Response parsing and recording


def test_each_recipient_gets_its_tem_email_id(scaleway, http):
    add_success(
        http,
        tem_email("to@example.com", "e-1"),
        tem_email("cc@example.com", "e-2", "cc"),
    )
    msg = message(cc=["cc@example.com"])

    msg.send()

    assert msg.anymail_status.status == {"queued"}
    assert msg.anymail_status.message_id == {"e-1", "e-2"}
    assert msg.anymail_status.recipients["cc@example.com"].message_id == "e-2"
    assert_recorded(
        status="sent",
        esp="scaleway",
        recipients={"to@example.com": ("queued", "e-1"), "cc@example.com": ("queued", "e-2")},
    )


def test_response_addresses_match_case_insensitively(scaleway, http):
    add_success(http, tem_email("to@example.com", "e-1"))
    msg = message(to=["To@Example.COM"])

    msg.send()

    assert msg.anymail_status.recipients["To@Example.COM"].message_id == "e-1"


def test_recipient_missing_from_response_is_unknown(scaleway, http):
    add_success(http, tem_email("to@example.com", "e-1"))
    msg = message(to=["to@example.com", "other@example.com"])

    msg.send()

    assert msg.anymail_status.recipients["other@example.com"].status == "unknown"
    assert msg.anymail_status.recipients["other@example.com"].message_id is None


def test_failed_email_status_maps_to_failed(scaleway, http):
    add_success(http, tem_email("to@example.com", "e-1", status="failed"))
    msg = message()

    msg.send()

    assert msg.anymail_status.status == {"failed"}


def test_response_without_emails_is_an_api_error(scaleway, http):
    http.add(responses.POST, API_URL, json={"unexpected": True}, status=200)

    with pytest.raises(AnymailAPIError, match="Invalid Scaleway API response format"):
        message().send()
    assert_recorded(status="failed", esp="scaleway", error_contains="Invalid Scaleway API")


def test_non_json_success_body_is_an_api_error(scaleway, http):
    http.add(responses.POST, API_URL, body="<html>OK</html>", status=200)

    with pytest.raises(AnymailAPIError, match="Invalid JSON in Scaleway API response"):
        message().send()
    assert_recorded(status="failed", esp="scaleway", error_contains="Invalid JSON")


def test_no_store_sends_without_touching_the_database(
    scaleway, no_store, http, django_assert_num_queries
):
    add_success(http, tem_email("to@example.com", "e-1"))
    msg = message()

    with django_assert_num_queries(0):
        msg.send()

    assert msg.anymail_status.message_id == "e-1"


# Errors


def test_validation_error_text_reaches_caller_and_record(scaleway, http):
    http.add(
        responses.POST,
        API_URL,
        status=400,
        json={
            "details": [
                {
                    "argument_name": "from.email",
                    "reason": "constraint",
                    "help_message": "domain is not checked in this project",
                }
            ],
            "message": "invalid argument(s)",
            "type": "invalid_arguments",
        },
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 400
    assert "domain is not checked in this project" in str(excinfo.value)
    assert isinstance(excinfo.value, requests.HTTPError)
    assert_recorded(
        status="failed", esp="scaleway", error_contains="domain is not checked in this project"
    )
    assert recorded_message().recipients.get().send_status == "failed"


def test_authentication_failure_is_an_api_error(scaleway, http):
    http.add(
        responses.POST,
        API_URL,
        status=401,
        json={
            "message": "authentication is denied",
            "method": "api_key",
            "reason": "invalid_argument",
            "type": "denied_authentication",
        },
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 401
    assert_recorded(status="failed", esp="scaleway", error_contains="authentication is denied")


def test_permission_denied_is_an_api_error(scaleway, http):
    http.add(
        responses.POST,
        API_URL,
        status=403,
        json={
            "details": [{"action": "create", "resource": "transactional_email_email"}],
            "message": "insufficient permissions",
            "type": "permissions_denied",
        },
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 403
    assert "insufficient permissions" in str(excinfo.value)


def test_rate_limit_is_an_api_error(scaleway, http):
    http.add(
        responses.POST,
        API_URL,
        status=429,
        json={"message": "too many requests", "type": "too_many_requests"},
    )

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="scaleway", error_contains="too many requests")


def test_server_error_is_an_api_error(scaleway, http):
    http.add(responses.POST, API_URL, status=503, body="Service Unavailable")

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert excinfo.value.status_code == 503
    assert_recorded(status="failed", esp="scaleway", error_contains="Service Unavailable")


@pytest.mark.parametrize("error", [requests.ConnectionError("refused"), requests.Timeout("slow")])
def test_connection_problems_are_api_errors(scaleway, http, error):
    http.add(responses.POST, API_URL, body=error)

    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()

    assert isinstance(excinfo.value.__cause__, type(error))
    assert SECRET_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="scaleway", error_contains=API_URL)


def test_fail_silently_swallows_api_errors(scaleway, http):
    http.add(responses.POST, API_URL, status=500, json={"message": "internal error"})

    sent = send_mail("Subject", "Body", "from@example.com", ["to@example.com"], fail_silently=True)

    assert sent == 0


# Settings


def test_missing_secret_key_names_the_setting(settings):
    settings.ANYMAIL = {"SCALEWAY_PROJECT_ID": PROJECT_ID}

    with pytest.raises(AnymailConfigurationError, match="SCALEWAY_SECRET_KEY"):
        make_backend(BACKEND)


def test_missing_project_id_names_the_setting(settings):
    settings.ANYMAIL = {"SCALEWAY_SECRET_KEY": SECRET_KEY}

    with pytest.raises(AnymailConfigurationError, match="SCALEWAY_PROJECT_ID"):
        make_backend(BACKEND)


def test_settings_can_be_backend_options(settings, http):
    settings.ANYMAIL = {}
    add_success(http, tem_email("to@example.com", "e-1"))
    backend = make_backend(BACKEND, secret_key="option-secret", project_id="option-project")

    backend.send_messages([message()])

    assert http.calls[0].request.headers["X-Auth-Token"] == "option-secret"
    assert request_json(http.calls[0])["project_id"] == "option-project"


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"tags": ["welcome"]}, "tags"),
        ({"metadata": {"order": "1"}}, "metadata"),
        ({"track_clicks": True}, "track_clicks"),
        ({"track_opens": True}, "track_opens"),
        ({"send_at": datetime(2025, 6, 1, 12, tzinfo=UTC)}, "send_at"),
        ({"envelope_sender": "bounces@example.com"}, "envelope_sender"),
        ({"template_id": "welcome-template"}, "template_id"),
        ({"merge_data": {"to@example.com": {"name": "A"}}}, "merge_data"),
        ({"merge_global_data": {"name": "A"}}, "merge_global_data"),
        ({"merge_metadata": {"to@example.com": {"id": "1"}}}, "merge_metadata"),
        ({"merge_headers": {"to@example.com": {"X-Id": "1"}}}, "merge_headers"),
    ],
)
def test_unsupported_feature_is_refused_before_any_request(scaleway, http, attrs, feature):
    with pytest.raises(AnymailUnsupportedFeature, match=feature):
        message(**attrs).send()
    assert len(http.calls) == 0


def test_amp_body_is_unsupported(scaleway, http):
    msg = message()
    msg.attach_alternative("<html amp4email></html>", "text/x-amp-html")

    with pytest.raises(AnymailUnsupportedFeature, match="AMP"):
        msg.send()


def test_inline_image_is_unsupported(scaleway, http):
    msg = message()
    msg.attach_inline_image(b"GIF89a fake", filename="logo.gif")

    with pytest.raises(AnymailUnsupportedFeature, match="inline attachments"):
        msg.send()


def test_non_ascii_mailbox_is_unsupported(scaleway, http):
    with pytest.raises(AnymailUnsupportedFeature, match="EAI"):
        message(to=["jörg@example.com"]).send()


def test_ignored_unsupported_features_are_left_out(settings, use_backend, http):
    settings.ANYMAIL = {
        "SCALEWAY_SECRET_KEY": SECRET_KEY,
        "SCALEWAY_PROJECT_ID": PROJECT_ID,
        "IGNORE_UNSUPPORTED_FEATURES": True,
    }
    use_backend(BACKEND)
    add_success(http, tem_email("to@example.com", "e-1"))
    msg = message(tags=["welcome"], metadata={"order": "1"}, track_opens=True)
    msg.attach_inline_image(b"GIF89a fake", filename="logo.gif")

    msg.send()

    body = request_json(http.calls[0])
    assert body["attachments"] == [
        {"name": "logo.gif", "type": "image/gif", "content": "R0lGODlhIGZha2U="}
    ]
    assert set(body) == {"project_id", "from", "to", "subject", "text", "attachments"}
