"""The SendGrid backend: the exact v3 Mail Send request, its responses and errors."""

import base64
import itertools
from datetime import UTC, datetime
from email.mime.base import MIMEBase
from email.mime.text import MIMEText

import pytest
import requests
import responses
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives

from sending import services
from sending.backends import sendgrid
from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.sendgrid.EmailBackend"
SEND_URL = "https://api.sendgrid.com/v3/mail/send"
API_KEY = "SG.fake-test-key"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake"
X_MESSAGE_ID = "Ua9z9lSTSaqYBWJe_Xfc-Q"  # per request; mailhub doesn't use it as an id

# The shapes SendGrid documents for its error responses.
VALIDATION_ERROR = {
    "errors": [
        {
            "message": "The from object must be provided for every email send. "
            "It is an object that requires the email parameter, "
            "but may also contain a name parameter.",
            "field": "from",
            "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from",
        }
    ]
}
AUTH_ERROR = {
    "errors": [
        {
            "field": None,
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "help": None,
        }
    ]
}


@pytest.fixture
def sendgrid_settings(settings, use_backend):
    settings.ANYMAIL = {"SENDGRID_API_KEY": API_KEY}
    use_backend(BACKEND)
    return settings


@pytest.fixture
def message_ids(monkeypatch):
    """Make the generated mailhub_ids predictable: id-1, id-2, ..."""
    counter = itertools.count(1)
    monkeypatch.setattr(sendgrid, "new_message_id", lambda: f"id-{next(counter)}")


@pytest.fixture
def accepted(http):
    """SendGrid accepts the send: 202 with an empty body."""
    http.add(responses.POST, SEND_URL, status=202, body="", headers={"X-Message-Id": X_MESSAGE_ID})
    return http


def sent_body(http) -> dict:
    assert len(http.calls) == 1
    return request_json(http.calls[0])


def make_message(**kwargs) -> AnymailMessage:
    defaults = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**defaults, **kwargs})


# The request


def test_send_mail_posts_json_with_bearer_auth(sendgrid_settings, accepted, message_ids):
    mail.send_mail("Subject", "Text body", "from@example.com", ["to@example.com"])

    request = accepted.calls[0].request
    assert request.method == "POST"
    assert request.url == SEND_URL
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    assert sent_body(accepted) == {
        "from": {"email": "from@example.com"},
        "subject": "Subject",
        "content": [{"type": "text/plain", "value": "Text body"}],
        "personalizations": [
            {"to": [{"email": "to@example.com"}], "custom_args": {"mailhub_id": "id-1"}}
        ],
    }


def test_success_status_is_queued_with_generated_id(sendgrid_settings, accepted, message_ids):
    message = make_message(to=["to@example.com", "Other <other@example.com>"])
    message.send()

    status = message.anymail_status
    assert status.status == {"queued"}
    assert status.message_id == "id-1"
    assert {addr: (r.status, r.message_id) for addr, r in status.recipients.items()} == {
        "to@example.com": ("queued", "id-1"),
        "other@example.com": ("queued", "id-1"),
    }
    assert status.esp_response.headers["X-Message-Id"] == X_MESSAGE_ID


def test_success_is_recorded_per_recipient(sendgrid_settings, accepted, message_ids):
    make_message(to=["To@Example.com"], cc=["cc@example.com"]).send()

    assert_recorded(
        status="sent",
        esp="sendgrid",
        recipients={
            "to@example.com": ("queued", "id-1"),
            "cc@example.com": ("queued", "id-1"),
        },
    )


def test_all_recipients_share_one_personalization(sendgrid_settings, accepted, message_ids):
    make_message(
        to=["Alice <alice@example.com>", "bob@example.com"],
        cc=["Carol Cc <carol@example.com>"],
        bcc=["dave@example.com"],
    ).send()

    assert sent_body(accepted)["personalizations"] == [
        {
            "to": [{"email": "alice@example.com", "name": "Alice"}, {"email": "bob@example.com"}],
            "cc": [{"email": "carol@example.com", "name": "Carol Cc"}],
            "bcc": [{"email": "dave@example.com"}],
            "custom_args": {"mailhub_id": "id-1"},
        }
    ]


def test_full_featured_message(sendgrid_settings, accepted, message_ids):
    message = AnymailMessage(
        subject="Your order",
        body="Text body",
        from_email='"Shop, Inc." <shop@example.com>',
        to=["to@example.com"],
        reply_to=["Help <help@example.com>"],
        headers={"X-Order": "1234", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        tags=["receipt", "web"],
        metadata={"order_id": 1234, "customer": "c-77"},
        track_clicks=False,
        track_opens=True,
        send_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("receipt.pdf", b"%PDF-1.4 fake", "application/pdf")
    cid = message.attach_inline_image(PNG, filename="logo.png")
    message.send()

    assert sent_body(accepted) == {
        "from": {"email": "shop@example.com", "name": "Shop, Inc."},
        "subject": "Your order",
        "reply_to": {"email": "help@example.com", "name": "Help"},
        "headers": {"X-Order": "1234", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        "content": [
            {"type": "text/plain", "value": "Text body"},
            {"type": "text/html", "value": "<p>HTML body</p>"},
        ],
        "attachments": [
            {
                "content": "JVBERi0xLjQgZmFrZQ==",
                "filename": "receipt.pdf",
                "type": "application/pdf",
                "disposition": "attachment",
            },
            {
                "content": base64.b64encode(PNG).decode("ascii"),
                "filename": "logo.png",
                "type": "image/png",
                "disposition": "inline",
                "content_id": cid,
            },
        ],
        "categories": ["receipt", "web"],
        "custom_args": {"order_id": "1234", "customer": "c-77"},
        "tracking_settings": {
            "click_tracking": {"enable": False},
            "open_tracking": {"enable": True},
        },
        "send_at": 1893553445,
        "personalizations": [
            {"to": [{"email": "to@example.com"}], "custom_args": {"mailhub_id": "id-1"}}
        ],
    }


def test_non_ascii_names_and_subject_are_sent_as_json_text(sendgrid_settings, accepted):
    make_message(
        subject="Grüße", from_email="Zoë Shop <shop@example.com>", to=["Jürgen <j@example.com>"]
    ).send()

    body = sent_body(accepted)
    assert body["subject"] == "Grüße"
    assert body["from"] == {"email": "shop@example.com", "name": "Zoë Shop"}
    assert body["personalizations"][0]["to"] == [{"email": "j@example.com", "name": "Jürgen"}]


def test_html_only_message_sends_only_html_content(sendgrid_settings, accepted):
    message = EmailMessage("Subject", "<p>Hi</p>", "from@example.com", ["to@example.com"])
    message.content_subtype = "html"
    message.send()

    assert sent_body(accepted)["content"] == [{"type": "text/html", "value": "<p>Hi</p>"}]


def test_amp_goes_between_text_and_html(sendgrid_settings, accepted):
    message = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.attach_alternative("<html amp4email>AMP</html>", "text/x-amp-html")
    message.send()

    assert sent_body(accepted)["content"] == [
        {"type": "text/plain", "value": "Text"},
        {"type": "text/x-amp-html", "value": "<html amp4email>AMP</html>"},
        {"type": "text/html", "value": "<p>HTML</p>"},
    ]


def test_other_alternatives_follow_text_and_html(sendgrid_settings, accepted):
    message = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    message.attach_alternative("BEGIN:VCALENDAR\r\nEND:VCALENDAR", "text/calendar")
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.send()

    assert sent_body(accepted)["content"] == [
        {"type": "text/plain", "value": "Text"},
        {"type": "text/html", "value": "<p>HTML</p>"},
        {"type": "text/calendar", "value": "BEGIN:VCALENDAR\r\nEND:VCALENDAR"},
    ]


def test_several_reply_to_addresses_use_reply_to_list(sendgrid_settings, accepted):
    make_message(reply_to=["one@example.com", "Two <two@example.com>"]).send()

    body = sent_body(accepted)
    assert "reply_to" not in body
    assert body["reply_to_list"] == [
        {"email": "one@example.com"},
        {"email": "two@example.com", "name": "Two"},
    ]


def test_unnamed_inline_image_is_named_by_its_content_id(sendgrid_settings, accepted):
    message = make_message()
    image = MIMEBase("image", "gif")
    image.set_payload(b"GIF89a")
    image["Content-ID"] = "<logo@inline>"
    message.attach(image)
    message.send()

    (attachment,) = sent_body(accepted)["attachments"]
    assert attachment["filename"] == "logo@inline"
    assert attachment["disposition"] == "inline"
    assert attachment["content_id"] == "logo@inline"


def test_attached_message_part_is_sent_as_attachment(sendgrid_settings, accepted):
    message = make_message()
    part = MIMEText("note text", "plain")
    part.add_header("Content-Disposition", "attachment", filename="note.txt")
    message.attach(part)
    message.send()

    (attachment,) = sent_body(accepted)["attachments"]
    assert attachment == {
        "content": "bm90ZSB0ZXh0",
        "filename": "note.txt",
        "type": "text/plain",
        "disposition": "attachment",
    }


def test_metadata_values_become_strings(sendgrid_settings, accepted):
    # SendGrid rejects custom_args whose values aren't strings
    make_message(metadata={"n": 1, "f": 2.5, "flag": True, "nested": {"a": [1]}}).send()

    assert sent_body(accepted)["custom_args"] == {
        "n": "1",
        "f": "2.5",
        "flag": "true",
        "nested": '{"a": [1]}',
    }


def test_unserializable_metadata_raises_serialization_error(sendgrid_settings, http):
    message = make_message(metadata={"when": object()})
    with pytest.raises(AnymailSerializationError):
        message.send()
    assert len(http.calls) == 0


def test_more_than_ten_tags_is_unsupported(sendgrid_settings, http):
    message = make_message(tags=[f"tag{n}" for n in range(11)])
    with pytest.raises(AnymailUnsupportedFeature, match="more than 10 tags"):
        message.send()
    assert len(http.calls) == 0


def test_ignored_unsupported_tags_send_the_first_ten(sendgrid_settings, accepted):
    sendgrid_settings.ANYMAIL = {**sendgrid_settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    make_message(tags=[f"tag{n}" for n in range(11)]).send()

    assert sent_body(accepted)["categories"] == [f"tag{n}" for n in range(10)]


def test_envelope_sender_is_unsupported(sendgrid_settings, http):
    message = make_message(envelope_sender="bounces@example.com")
    with pytest.raises(AnymailUnsupportedFeature, match="envelope_sender"):
        message.send()
    assert len(http.calls) == 0


def test_ignored_envelope_sender_is_left_out(sendgrid_settings, accepted, message_ids):
    sendgrid_settings.ANYMAIL = {**sendgrid_settings.ANYMAIL, "IGNORE_UNSUPPORTED_FEATURES": True}
    make_message(envelope_sender="bounces@example.com").send()

    assert sent_body(accepted) == {
        "from": {"email": "from@example.com"},
        "subject": "Subject",
        "content": [{"type": "text/plain", "value": "Text body"}],
        "personalizations": [
            {"to": [{"email": "to@example.com"}], "custom_args": {"mailhub_id": "id-1"}}
        ],
    }


def test_suppressed_recipient_is_left_out_of_the_request(sendgrid_settings, accepted, message_ids):
    services.suppression_add(address="cc@example.com", reason="bounced")
    message = make_message(cc=["cc@example.com"])
    message.send()

    assert sent_body(accepted)["personalizations"] == [
        {"to": [{"email": "to@example.com"}], "custom_args": {"mailhub_id": "id-1"}}
    ]
    assert_recorded(
        status="sent",
        esp="sendgrid",
        recipients={"to@example.com": ("queued", "id-1"), "cc@example.com": ("suppressed", "")},
    )


# Templates and batch sends


def test_dynamic_template_batch_has_one_personalization_per_to(
    sendgrid_settings, accepted, message_ids
):
    message = make_message(
        subject="",
        body="",
        to=["Alice <alice@example.com>", "bob@example.com"],
        cc=["cc@example.com"],
        template_id="d-5a963add2ec84305813ff860db277d7a",
        merge_data={
            "alice@example.com": {"name": "Alice", "order": {"no": 12345}},
            "bob@example.com": {"name": "Bob", "ship_date": "May 20"},
        },
        merge_global_data={"ship_date": "May 15", "shop": "Example"},
        merge_metadata={"alice@example.com": {"customer": 1}},
        metadata={"campaign": "spring"},
    )
    message.send()

    assert sent_body(accepted) == {
        "from": {"email": "from@example.com"},
        "template_id": "d-5a963add2ec84305813ff860db277d7a",
        "custom_args": {"campaign": "spring"},
        "personalizations": [
            {
                "to": [{"email": "alice@example.com", "name": "Alice"}],
                "cc": [{"email": "cc@example.com"}],
                "custom_args": {"customer": "1", "mailhub_id": "id-1"},
                "dynamic_template_data": {
                    "name": "Alice",
                    "order": {"no": 12345},
                    "ship_date": "May 15",
                    "shop": "Example",
                },
            },
            {
                "to": [{"email": "bob@example.com"}],
                "cc": [{"email": "cc@example.com"}],
                "custom_args": {"mailhub_id": "id-2"},
                "dynamic_template_data": {"name": "Bob", "ship_date": "May 20", "shop": "Example"},
            },
        ],
    }


def test_batch_gives_each_to_its_own_message_id(sendgrid_settings, accepted, message_ids):
    message = make_message(
        to=["alice@example.com", "bob@example.com"],
        bcc=["audit@example.com"],
        merge_data={},
    )
    message.send()

    assert message.anymail_status.message_id == {"id-1", "id-2"}
    assert_recorded(
        status="sent",
        esp="sendgrid",
        recipients={
            "alice@example.com": ("queued", "id-1"),
            "bob@example.com": ("queued", "id-2"),
            # bcc gets a copy of each message; its status carries the first id
            "audit@example.com": ("queued", "id-1"),
        },
    )


def test_merge_headers_go_in_each_personalization(sendgrid_settings, accepted, message_ids):
    make_message(
        to=["alice@example.com", "bob@example.com"],
        headers={"X-Shared": "yes"},
        merge_headers={"alice@example.com": {"List-Unsubscribe": "<https://example.com/u/1>"}},
    ).send()

    body = sent_body(accepted)
    assert body["headers"] == {"X-Shared": "yes"}
    assert body["personalizations"] == [
        {
            "to": [{"email": "alice@example.com"}],
            "custom_args": {"mailhub_id": "id-1"},
            "headers": {"List-Unsubscribe": "<https://example.com/u/1>"},
        },
        {"to": [{"email": "bob@example.com"}], "custom_args": {"mailhub_id": "id-2"}},
    ]


def test_dynamic_template_without_batch_uses_global_data(sendgrid_settings, accepted, message_ids):
    make_message(
        to=["alice@example.com", "bob@example.com"],
        subject="",
        body="",
        template_id="d-abc",
        merge_global_data={"shop": "Example", "count": 3},
    ).send()

    assert sent_body(accepted) == {
        "from": {"email": "from@example.com"},
        "template_id": "d-abc",
        "personalizations": [
            {
                "to": [{"email": "alice@example.com"}, {"email": "bob@example.com"}],
                "custom_args": {"mailhub_id": "id-1"},
                "dynamic_template_data": {"shop": "Example", "count": 3},
            }
        ],
    }


def test_legacy_template_uses_merge_field_format_setting(sendgrid_settings, accepted):
    sendgrid_settings.ANYMAIL = {**sendgrid_settings.ANYMAIL, "SENDGRID_MERGE_FIELD_FORMAT": "-{}-"}
    make_message(
        to=["alice@example.com"],
        template_id="5997fcf6-2b9f-484d-acd5-7e9a99f0dc1f",
        merge_data={"alice@example.com": {"name": "Alice", "order_no": 12345}},
        merge_global_data={"ship_date": "May 15"},
    ).send()

    body = sent_body(accepted)
    assert body["template_id"] == "5997fcf6-2b9f-484d-acd5-7e9a99f0dc1f"
    (personalization,) = body["personalizations"]
    assert personalization["substitutions"] == {
        "-name-": "Alice",
        "-order_no-": "12345",
        "-ship_date-": "May 15",
    }
    assert "dynamic_template_data" not in personalization


def test_esp_extra_merge_field_format_overrides_setting(sendgrid_settings, accepted):
    sendgrid_settings.ANYMAIL = {**sendgrid_settings.ANYMAIL, "SENDGRID_MERGE_FIELD_FORMAT": "-{}-"}
    make_message(
        template_id="5997fcf6-2b9f-484d-acd5-7e9a99f0dc1f",
        merge_global_data={"name": "Alice"},
        esp_extra={"merge_field_format": "%{}%"},
    ).send()

    body = sent_body(accepted)
    assert body["personalizations"][0]["substitutions"] == {"%name%": "Alice"}
    assert "merge_field_format" not in body


def test_on_the_fly_merge_without_format_uses_keys_as_given(sendgrid_settings, accepted):
    make_message(
        subject="Hello :name",
        body="Hi :name",
        merge_data={"to@example.com": {":name": "Alice"}},
    ).send()

    assert sent_body(accepted)["personalizations"][0]["substitutions"] == {":name": "Alice"}


def test_unserializable_merge_data_raises_serialization_error(sendgrid_settings, http):
    message = make_message(template_id="d-abc", merge_data={"to@example.com": {"x": object()}})
    with pytest.raises(AnymailSerializationError):
        message.send()
    assert len(http.calls) == 0


# esp_extra


def test_esp_extra_is_deep_merged_into_the_body(sendgrid_settings, accepted):
    make_message(
        track_opens=False,
        esp_extra={
            "asm": {"group_id": 1, "groups_to_display": [1, 2]},
            "ip_pool_name": "transactional",
            "batch_id": "YOUR_BATCH_ID",
            "mail_settings": {"sandbox_mode": {"enable": True}},
            "tracking_settings": {"subscription_tracking": {"enable": False}},
        },
    ).send()

    body = sent_body(accepted)
    assert body["asm"] == {"group_id": 1, "groups_to_display": [1, 2]}
    assert body["ip_pool_name"] == "transactional"
    assert body["batch_id"] == "YOUR_BATCH_ID"
    assert body["mail_settings"] == {"sandbox_mode": {"enable": True}}
    assert body["tracking_settings"] == {
        "open_tracking": {"enable": False},
        "subscription_tracking": {"enable": False},
    }


def test_esp_extra_personalizations_dict_merges_into_each(sendgrid_settings, accepted, message_ids):
    make_message(
        to=["alice@example.com", "bob@example.com"],
        merge_data={},
        esp_extra={"personalizations": {"send_at": 1893553445, "custom_args": {"src": "x"}}},
    ).send()

    assert sent_body(accepted)["personalizations"] == [
        {
            "to": [{"email": "alice@example.com"}],
            "custom_args": {"mailhub_id": "id-1", "src": "x"},
            "send_at": 1893553445,
        },
        {
            "to": [{"email": "bob@example.com"}],
            "custom_args": {"mailhub_id": "id-2", "src": "x"},
            "send_at": 1893553445,
        },
    ]


def test_esp_extra_personalizations_list_replaces_them(sendgrid_settings, accepted):
    own = [{"to": [{"email": "to@example.com"}], "subject": "Mine"}]
    message = make_message(esp_extra={"personalizations": own})
    message.send()

    assert sent_body(accepted)["personalizations"] == own
    # mailhub's ids weren't sent, so there is none to report
    assert message.anymail_status.recipients["to@example.com"].message_id is None


# Settings


def test_missing_api_key_names_the_setting(settings, use_backend):
    settings.ANYMAIL = {}
    with pytest.raises(AnymailConfigurationError, match=r"SENDGRID_API_KEY"):
        make_backend(BACKEND)


def test_bare_sendgrid_api_key_setting_is_accepted(settings, use_backend, accepted):
    settings.ANYMAIL = {}
    settings.SENDGRID_API_KEY = "SG.bare-fake-key"
    use_backend(BACKEND)
    make_message().send()

    assert accepted.calls[0].request.headers["Authorization"] == "Bearer SG.bare-fake-key"


def test_api_url_setting_selects_the_eu_host(sendgrid_settings, http):
    eu_url = "https://api.eu.sendgrid.com/v3/mail/send"
    http.add(responses.POST, eu_url, status=202, body="")
    sendgrid_settings.ANYMAIL = {
        **sendgrid_settings.ANYMAIL,
        "SENDGRID_API_URL": "https://api.eu.sendgrid.com/v3",  # no trailing slash
    }
    make_message().send()

    assert http.calls[0].request.url == eu_url


def test_api_key_can_be_given_to_the_connection(settings, accepted):
    settings.ANYMAIL = {}
    connection = make_backend(BACKEND, api_key="SG.connection-fake-key")
    make_message(connection=connection).send()

    assert accepted.calls[0].request.headers["Authorization"] == "Bearer SG.connection-fake-key"


def test_generate_message_id_off_sends_no_id(sendgrid_settings, accepted):
    sendgrid_settings.ANYMAIL = {**sendgrid_settings.ANYMAIL, "SENDGRID_GENERATE_MESSAGE_ID": False}
    message = make_message()
    message.send()

    assert sent_body(accepted)["personalizations"] == [{"to": [{"email": "to@example.com"}]}]
    assert message.anymail_status.status == {"queued"}
    assert message.anymail_status.message_id is None


def test_one_session_serves_every_message_of_a_call(sendgrid_settings, http, monkeypatch):
    http.add(responses.POST, SEND_URL, status=202, body="")
    http.add(responses.POST, SEND_URL, status=202, body="")
    sessions = []
    original_init = requests.Session.__init__

    def counting_init(self, *args, **kwargs):
        sessions.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "__init__", counting_init)
    connection = mail.get_connection()
    sent = connection.send_messages([make_message(), make_message(to=["two@example.com"])])

    assert sent == 2
    assert len(http.calls) == 2
    assert len(sessions) == 1


# Errors


def test_validation_error_raises_with_sendgrid_message(sendgrid_settings, http):
    http.add(responses.POST, SEND_URL, status=400, json=VALIDATION_ERROR)
    message = make_message()
    with pytest.raises(AnymailAPIError) as excinfo:
        message.send()

    error = excinfo.value
    assert error.status_code == 400
    assert isinstance(error, requests.HTTPError)
    assert "The from object must be provided for every email send" in str(error)


def test_validation_error_is_recorded_as_failed(sendgrid_settings, http):
    http.add(responses.POST, SEND_URL, status=400, json=VALIDATION_ERROR)
    with pytest.raises(AnymailAPIError):
        make_message().send()

    assert_recorded(
        status="failed",
        esp="sendgrid",
        error_contains="The from object must be provided for every email send",
        recipients={"to@example.com": ("failed", "")},
    )


def test_auth_failure_raises_and_is_recorded(sendgrid_settings, http):
    http.add(responses.POST, SEND_URL, status=401, json=AUTH_ERROR)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 401
    assert "authorization grant is invalid, expired, or revoked" in str(excinfo.value)
    assert_recorded(
        status="failed",
        esp="sendgrid",
        error_contains="The provided authorization grant is invalid, expired, or revoked",
    )


def test_payload_too_large_raises(sendgrid_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=413,
        json={"errors": [{"field": None, "message": "request entity too large", "help": None}]},
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 413
    assert "request entity too large" in str(excinfo.value)
    assert_recorded(status="failed", esp="sendgrid", error_contains="request entity too large")


def test_rate_limit_raises_with_status_429(sendgrid_settings, http):
    http.add(
        responses.POST,
        SEND_URL,
        status=429,
        json={"errors": [{"field": None, "message": "too many requests"}]},
    )
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == 429
    assert "too many requests" in str(excinfo.value)
    assert_recorded(status="failed", esp="sendgrid", error_contains="too many requests")


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_raises_and_is_recorded(sendgrid_settings, http, status):
    http.add(responses.POST, SEND_URL, status=status, body="Service Unavailable")
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.status_code == status
    assert_recorded(status="failed", esp="sendgrid", error_contains="Service Unavailable")


def test_fail_silently_swallows_api_errors(sendgrid_settings, http):
    http.add(responses.POST, SEND_URL, status=500, body="Internal Server Error")

    assert mail.send_mail("S", "B", "from@example.com", ["to@example.com"], fail_silently=True) == 0


@pytest.mark.parametrize(
    "error", [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")]
)
def test_connection_problems_raise_api_error_naming_the_url(sendgrid_settings, http, error):
    http.add(responses.POST, SEND_URL, body=error)
    with pytest.raises(AnymailAPIError) as excinfo:
        make_message().send()

    assert excinfo.value.__cause__ is error
    assert SEND_URL in str(excinfo.value)
    assert API_KEY not in str(excinfo.value)
    assert_recorded(status="failed", esp="sendgrid", error_contains=str(error))


# Recording switched off


def test_no_store_sends_without_touching_the_database(
    sendgrid_settings, no_store, accepted, django_assert_num_queries
):
    message = make_message()
    with django_assert_num_queries(0):
        message.send()

    assert message.anymail_status.status == {"queued"}
    assert Message.objects.count() == 0
