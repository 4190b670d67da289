"""Postmark backend: the exact requests sent and how Postmark's answers are read.

Response bodies follow https://postmarkapp.com/developer/api/email-api,
https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails
and https://postmarkapp.com/developer/api/overview (error codes).
"""

from datetime import UTC, datetime
from email.mime.image import MIMEImage

import pytest
import requests
import responses
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail

from sending.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message
from sending.services import suppression_add
from tests.conftest import make_backend
from tests.helpers import assert_recorded, request_json

pytestmark = pytest.mark.django_db

BACKEND = "sending.backends.postmark.EmailBackend"
API = "https://api.postmarkapp.com"
TOKEN = "fake-server-token-0000"
MESSAGE_ID = "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"
MESSAGE_ID_2 = "e2ecbbfc-fe12-463d-b933-9fe22915106d"
SUBMITTED_AT = "2010-11-26T12:01:05.1794748-05:00"


def ok(to, message_id=MESSAGE_ID, message="OK"):
    """Postmark's answer for one accepted message."""
    return {
        "To": to,
        "SubmittedAt": SUBMITTED_AT,
        "MessageID": message_id,
        "ErrorCode": 0,
        "Message": message,
    }


INACTIVE_406 = {
    "ErrorCode": 406,
    "Message": (
        "You tried to send to recipient(s) that have been marked as inactive. "
        "Found inactive addresses: bounced@example.com. Inactive recipients are ones "
        "that have generated a hard bounce, a spam complaint, or a manual suppression."
    ),
}


@pytest.fixture
def postmark(settings, use_backend):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN}
    use_backend(BACKEND)


def message(**kwargs):
    fields = {
        "subject": "Subject",
        "body": "Text body",
        "from_email": "from@example.com",
        "to": ["to@example.com"],
    }
    return AnymailMessage(**{**fields, **kwargs})


def expect(http, path="/email", json=None, status=200, **kwargs):
    if json is None and "body" not in kwargs:
        json = ok("to@example.com")
    return http.add(responses.POST, f"{API}{path}", json=json, status=status, **kwargs)


def sent_json(http):
    assert len(http.calls) == 1
    return request_json(http.calls[0])


# The request


def test_plain_message_posts_json_to_email_endpoint(postmark, http):
    expect(http)
    send_mail("Subject", "Text body", "from@example.com", ["to@example.com"])

    request = http.calls[0].request
    assert request.method == "POST"
    assert request.url == f"{API}/email"
    assert request.headers["X-Postmark-Server-Token"] == TOKEN
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request_json(http.calls[0]) == {
        "From": "from@example.com",
        "To": "to@example.com",
        "Subject": "Subject",
        "TextBody": "Text body",
    }


def test_plain_message_status_and_record(postmark, http):
    expect(http)
    msg = message()
    msg.send()
    assert msg.anymail_status.status == {"sent"}
    assert msg.anymail_status.message_id == MESSAGE_ID
    assert msg.anymail_status.recipients["to@example.com"].message_id == MESSAGE_ID
    assert_recorded(
        status="sent", esp="postmark", recipients={"to@example.com": ("sent", MESSAGE_ID)}
    )


def test_all_recipients_of_one_message_share_its_message_id(postmark, http):
    expect(http, json=ok("to@example.com, other@example.com"))
    msg = message(to=["to@example.com", "other@example.com"], cc=["cc@example.com"])
    msg.send()
    assert sent_json(http)["To"] == "to@example.com, other@example.com"
    assert {r.message_id for r in msg.anymail_status.recipients.values()} == {MESSAGE_ID}
    assert_recorded(
        status="sent",
        esp="postmark",
        recipients={
            "to@example.com": ("sent", MESSAGE_ID),
            "other@example.com": ("sent", MESSAGE_ID),
            "cc@example.com": ("sent", MESSAGE_ID),
        },
    )


def test_full_featured_message(postmark, http):
    expect(http)
    msg = AnymailMessage(
        subject="Hello",
        body="Text body",
        from_email='"Sender, Inc." <from@example.com>',
        to=["Recipient <to@example.com>"],
        cc=["cc1@example.com", "Copy Two <cc2@example.com>"],
        bcc=["bcc@example.com"],
        reply_to=["reply1@example.com", "Reply Two <reply2@example.com>"],
        headers={"X-Custom": "value", "List-Unsubscribe": "<mailto:unsub@example.com>"},
        tags=["receipts"],
        metadata={"order_id": "123", "user": 7},
        track_clicks=True,
        track_opens=True,
        esp_extra={"MessageStream": "notifications", "Metadata": {"extra": "deep"}},
    )
    msg.attach_alternative("<p>HTML body <img src='cid:logo'></p>", "text/html")
    msg.attach("report.csv", "a,b\n1,2\n", "text/csv")
    image = MIMEImage(b"\x89PNG fake", "png")
    image.add_header("Content-ID", "<logo@inline>")
    image.add_header("Content-Disposition", "inline", filename="logo.png")
    msg.attach(image)
    msg.send()

    assert sent_json(http) == {
        "From": '"Sender, Inc." <from@example.com>',
        "To": "Recipient <to@example.com>",
        "Cc": "cc1@example.com, Copy Two <cc2@example.com>",
        "Bcc": "bcc@example.com",
        "ReplyTo": "reply1@example.com, Reply Two <reply2@example.com>",
        "Subject": "Hello",
        "TextBody": "Text body",
        "HtmlBody": "<p>HTML body <img src='cid:logo'></p>",
        "Headers": [
            {"Name": "X-Custom", "Value": "value"},
            {"Name": "List-Unsubscribe", "Value": "<mailto:unsub@example.com>"},
        ],
        "Attachments": [
            {"Name": "report.csv", "Content": "YSxiCjEsMgo=", "ContentType": "text/csv"},
            {
                "Name": "logo.png",
                "Content": "iVBORyBmYWtl",
                "ContentType": "image/png",
                "ContentID": "cid:logo@inline",
            },
        ],
        "Tag": "receipts",
        "Metadata": {"order_id": "123", "user": 7, "extra": "deep"},
        "TrackLinks": "HtmlAndText",
        "TrackOpens": True,
        "MessageStream": "notifications",
    }
    assert_recorded(
        status="sent",
        esp="postmark",
        recipients={
            "to@example.com": ("sent", MESSAGE_ID),
            "cc1@example.com": ("sent", MESSAGE_ID),
            "cc2@example.com": ("sent", MESSAGE_ID),
            "bcc@example.com": ("sent", MESSAGE_ID),
        },
    )


def test_html_only_message_sends_html_body(postmark, http):
    expect(http)
    msg = EmailMessage("Subject", "<p>Hi</p>", "from@example.com", ["to@example.com"])
    msg.content_subtype = "html"
    msg.send()
    data = sent_json(http)
    assert data["HtmlBody"] == "<p>Hi</p>"
    assert "TextBody" not in data


def test_inline_image_without_filename_is_named_by_its_content_id(postmark, http):
    expect(http)
    msg = message()
    cid = msg.attach_inline_image(b"\x89PNG fake", subtype="png")
    msg.send()
    (attachment,) = sent_json(http)["Attachments"]
    assert attachment["Name"] == cid
    assert attachment["ContentID"] == f"cid:{cid}"


def test_reply_to_header_becomes_reply_to_field(postmark, http):
    expect(http)
    message(headers={"Reply-To": "help@example.com"}).send()
    data = sent_json(http)
    assert data["ReplyTo"] == "help@example.com"
    assert "Headers" not in data


def test_track_clicks_false_turns_link_tracking_off(postmark, http):
    expect(http)
    message(track_clicks=False, track_opens=False).send()
    data = sent_json(http)
    assert data["TrackLinks"] == "None"
    assert data["TrackOpens"] is False


def test_cc_only_message_has_no_to_field(postmark, http):
    expect(http, json=ok(""))
    msg = message(to=[], cc=["cc@example.com"])
    msg.send()
    data = sent_json(http)
    assert "To" not in data
    assert data["Cc"] == "cc@example.com"
    assert msg.anymail_status.recipients["cc@example.com"].status == "sent"


def test_suppressed_recipient_is_left_out_of_the_request(postmark, http):
    suppression_add(address="gone@example.com")
    expect(http)
    msg = message(to=["to@example.com", "gone@example.com"])
    msg.send()
    assert sent_json(http)["To"] == "to@example.com"
    assert_recorded(
        status="sent",
        esp="postmark",
        recipients={
            "to@example.com": ("sent", MESSAGE_ID),
            "gone@example.com": ("suppressed", ""),
        },
    )


def test_esp_send_defaults_choose_the_message_stream(settings, use_backend, http):
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": TOKEN,
        "POSTMARK_SEND_DEFAULTS": {"esp_extra": {"MessageStream": "broadcast"}},
    }
    use_backend(BACKEND)
    expect(http)
    message().send()
    assert sent_json(http)["MessageStream"] == "broadcast"


def test_unserializable_metadata_raises_serialization_error(postmark, http):
    with pytest.raises(AnymailSerializationError, match="Postmark"):
        message(metadata={"when": datetime(2024, 1, 1, tzinfo=UTC)}).send()
    assert len(http.calls) == 0
    assert_recorded(status="failed", esp="postmark", error_contains="AnymailSerializationError")


# Stored templates


def test_template_alias_sends_with_template(postmark, http):
    expect(http, path="/email/withTemplate")
    msg = message(
        subject="",
        body="",
        template_id="welcome-email",
        merge_global_data={"product": "mailhub", "name": "friend"},
    )
    msg.send()
    assert sent_json(http) == {
        "From": "from@example.com",
        "To": "to@example.com",
        "TemplateAlias": "welcome-email",
        "TemplateModel": {"product": "mailhub", "name": "friend"},
    }
    assert_recorded(
        status="sent", esp="postmark", recipients={"to@example.com": ("sent", MESSAGE_ID)}
    )


@pytest.mark.parametrize("template_id", [80801, "80801"])
def test_numeric_template_id_is_sent_as_template_id(postmark, http, template_id):
    # A resent message gives its stored template_id back as a string
    expect(http, path="/email/withTemplate")
    message(subject="", body="", template_id=template_id).send()
    data = sent_json(http)
    assert data["TemplateId"] == 80801
    assert data["TemplateModel"] == {}
    assert "TemplateAlias" not in data


def test_template_with_a_subject_is_unsupported(postmark, http):
    with pytest.raises(AnymailUnsupportedFeature, match="overriding a template's subject"):
        message(subject="Mine", body="", template_id=80801).send()
    assert len(http.calls) == 0


def test_template_subject_and_body_are_dropped_when_unsupported_features_ignored(
    settings, use_backend, http
):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN, "IGNORE_UNSUPPORTED_FEATURES": True}
    use_backend(BACKEND)
    expect(http, path="/email/withTemplate")
    message(subject="Mine", body="Body", template_id=80801).send()
    data = sent_json(http)
    assert "Subject" not in data
    assert "TextBody" not in data


def test_merge_data_without_template_is_unsupported(postmark, http):
    with pytest.raises(AnymailUnsupportedFeature, match="merge_data without template_id"):
        message(merge_data={"to@example.com": {"name": "Al"}}).send()
    assert len(http.calls) == 0


def test_merge_global_data_without_template_is_unsupported(postmark, http):
    with pytest.raises(AnymailUnsupportedFeature, match="merge_data without template_id"):
        message(merge_global_data={"name": "Al"}).send()


# Batch sending


def test_batch_with_template_sends_one_message_per_to_recipient(postmark, http):
    expect(
        http,
        path="/email/batchWithTemplates",
        json=[ok("alice@example.com"), ok("Bob <bob@example.com>", MESSAGE_ID_2)],
    )
    msg = message(
        subject="",
        body="",
        to=["alice@example.com", "Bob <bob@example.com>"],
        template_id="receipt",
        merge_global_data={"shop": "Acme", "name": "customer"},
        merge_data={"alice@example.com": {"name": "Alice"}, "bob@example.com": {"order": 2}},
        metadata={"campaign": "spring"},
        merge_metadata={"alice@example.com": {"user": 1}, "bob@example.com": {"user": 2}},
        tags=["receipt"],
    )
    msg.send()

    assert sent_json(http) == {
        "Messages": [
            {
                "From": "from@example.com",
                "To": "alice@example.com",
                "Tag": "receipt",
                "Metadata": {"campaign": "spring", "user": 1},
                "TemplateAlias": "receipt",
                "TemplateModel": {"shop": "Acme", "name": "Alice"},
            },
            {
                "From": "from@example.com",
                "To": "Bob <bob@example.com>",
                "Tag": "receipt",
                "Metadata": {"campaign": "spring", "user": 2},
                "TemplateAlias": "receipt",
                "TemplateModel": {"shop": "Acme", "name": "customer", "order": 2},
            },
        ]
    }
    assert msg.anymail_status.message_id == {MESSAGE_ID, MESSAGE_ID_2}
    assert_recorded(
        status="sent",
        esp="postmark",
        recipients={
            "alice@example.com": ("sent", MESSAGE_ID),
            "bob@example.com": ("sent", MESSAGE_ID_2),
        },
    )


def test_batch_without_template_posts_a_list_to_email_batch(postmark, http):
    expect(
        http,
        path="/email/batch",
        json=[ok("alice@example.com"), ok("bob@example.com", MESSAGE_ID_2)],
    )
    message(
        to=["alice@example.com", "bob@example.com"],
        headers={"X-Campaign": "spring", "X-Variant": "a"},
        merge_headers={"bob@example.com": {"x-variant": "b", "List-Id": "bob"}},
        merge_metadata={"alice@example.com": {"user": 1}},
        esp_extra={"MessageStream": "broadcast"},
    ).send()

    assert sent_json(http) == [
        {
            "From": "from@example.com",
            "To": "alice@example.com",
            "Subject": "Subject",
            "TextBody": "Text body",
            "Metadata": {"user": 1},
            "Headers": [
                {"Name": "X-Campaign", "Value": "spring"},
                {"Name": "X-Variant", "Value": "a"},
            ],
            "MessageStream": "broadcast",
        },
        {
            "From": "from@example.com",
            "To": "bob@example.com",
            "Subject": "Subject",
            "TextBody": "Text body",
            "Headers": [
                {"Name": "X-Campaign", "Value": "spring"},
                {"Name": "x-variant", "Value": "b"},
                {"Name": "List-Id", "Value": "bob"},
            ],
            "MessageStream": "broadcast",
        },
    ]


def test_empty_merge_data_forces_batch_sending(postmark, http):
    expect(http, path="/email/batch", json=[ok("a@example.com"), ok("b@example.com", MESSAGE_ID_2)])
    message(to=["a@example.com", "b@example.com"], merge_data={}).send()
    assert [m["To"] for m in sent_json(http)] == ["a@example.com", "b@example.com"]


def test_batch_copies_cc_onto_every_message(postmark, http):
    expect(http, path="/email/batch", json=[ok("a@example.com"), ok("b@example.com", MESSAGE_ID_2)])
    msg = message(to=["a@example.com", "b@example.com"], cc=["cc@example.com"], merge_data={})
    msg.send()
    assert [m["Cc"] for m in sent_json(http)] == ["cc@example.com", "cc@example.com"]
    assert msg.anymail_status.recipients["cc@example.com"].status == "sent"


@pytest.mark.parametrize("bounced_first", [True, False])
def test_batch_cc_is_sent_when_any_copy_was_sent(postmark, http, bounced_first):
    to = ["bounced@example.com", "good@example.com"]
    results = [INACTIVE_406, ok("good@example.com")]
    if not bounced_first:
        to.reverse()
        results.reverse()
    expect(http, path="/email/batch", json=results)
    msg = message(to=to, cc=["cc@example.com"], merge_data={})
    msg.send()
    assert msg.anymail_status.recipients["cc@example.com"].status == "sent"
    assert msg.anymail_status.recipients["cc@example.com"].message_id == MESSAGE_ID
    assert msg.anymail_status.recipients["bounced@example.com"].status == "rejected"


def test_batch_messages_fail_individually(postmark, http):
    expect(
        http,
        path="/email/batch",
        json=[
            ok("good@example.com"),
            {
                "ErrorCode": 406,
                "Message": (
                    "You tried to send to a recipient that has been marked as inactive. "
                    "Found inactive addresses: bounced@example.com. Inactive recipients are "
                    "ones that have generated a hard bounce or a spam complaint. "
                ),
            },
            {"ErrorCode": 300, "Message": "Invalid 'To' address: 'bad..dots@example.com'."},
        ],
    )
    msg = message(
        to=["good@example.com", "bounced@example.com", "bad..dots@example.com"],
        merge_metadata={},
    )
    msg.send()
    assert {addr: s.status for addr, s in msg.anymail_status.recipients.items()} == {
        "good@example.com": "sent",
        "bounced@example.com": "rejected",
        "bad..dots@example.com": "invalid",
    }
    assert_recorded(
        status="sent",
        esp="postmark",
        recipients={
            "good@example.com": ("sent", MESSAGE_ID),
            "bounced@example.com": ("rejected", ""),
            "bad..dots@example.com": ("invalid", ""),
        },
    )


def test_batch_cc_is_rejected_along_with_a_message_refused_for_an_invalid_to(postmark, http):
    expect(
        http,
        path="/email/batch",
        json=[{"ErrorCode": 300, "Message": "Invalid 'To' address: 'bad..dots@example.com'."}],
    )
    msg = message(to=["bad..dots@example.com"], cc=["cc@example.com"], merge_data={})
    with pytest.raises(AnymailRecipientsRefused):
        msg.send()
    assert msg.anymail_status.recipients["bad..dots@example.com"].status == "invalid"
    assert msg.anymail_status.recipients["cc@example.com"].status == "rejected"


def test_batch_whose_every_message_is_refused_for_its_recipients_raises_refused(postmark, http):
    expect(http, path="/email/batch", json=[INACTIVE_406])
    with pytest.raises(AnymailRecipientsRefused):
        message(to=["bounced@example.com"], merge_data={}).send()
    assert_recorded(
        status="rejected", esp="postmark", recipients={"bounced@example.com": ("rejected", "")}
    )


def test_batch_whose_every_message_fails_raises_api_error(postmark, http):
    error = {"ErrorCode": 400, "Message": "Sender signature not defined for From address."}
    expect(http, path="/email/batch", json=[error, error])
    with pytest.raises(AnymailAPIError, match="Sender signature not defined"):
        message(to=["a@example.com", "b@example.com"], merge_data={}).send()
    assert_recorded(status="failed", esp="postmark", error_contains="Sender signature not defined")


def test_batch_answer_of_the_wrong_length_is_an_api_error(postmark, http):
    expect(http, path="/email/batch", json=[ok("a@example.com")])
    with pytest.raises(AnymailAPIError, match="Unexpected Postmark API response"):
        message(to=["a@example.com", "b@example.com"], merge_data={}).send()


# Recipient status in single sends


def test_inactive_recipients_skipped_by_an_ok_answer_are_rejected(postmark, http):
    expect(
        http,
        json=ok(
            "to@example.com, bounced@example.com",
            message="Message OK, but will not deliver to these inactive addresses: "
            "bounced@example.com",
        ),
    )
    msg = message(to=["to@example.com", "Bounced <Bounced@example.com>"])
    msg.send()
    assert msg.anymail_status.recipients["to@example.com"].status == "sent"
    assert msg.anymail_status.recipients["Bounced@example.com"].status == "rejected"
    assert_recorded(
        status="sent",
        esp="postmark",
        recipients={
            "to@example.com": ("sent", MESSAGE_ID),
            "bounced@example.com": ("rejected", ""),
        },
    )


def test_single_send_to_only_inactive_recipients_is_refused_not_an_api_error(postmark, http):
    expect(http, json=INACTIVE_406, status=422)
    msg = message(to=["bounced@example.com"])
    with pytest.raises(AnymailRecipientsRefused):
        msg.send()
    assert msg.anymail_status.recipients["bounced@example.com"].status == "rejected"
    assert_recorded(
        status="rejected", esp="postmark", recipients={"bounced@example.com": ("rejected", "")}
    )


def test_single_send_to_inactive_recipients_with_ignore_recipient_status(
    settings, use_backend, http
):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN, "IGNORE_RECIPIENT_STATUS": True}
    use_backend(BACKEND)
    expect(http, json=INACTIVE_406, status=422)
    msg = message(to=["bounced@example.com"])
    assert msg.send() == 1
    assert msg.anymail_status.status == {"rejected"}


# Unsupported features


@pytest.mark.parametrize(
    ("attrs", "feature"),
    [
        ({"tags": ["one", "two"]}, "multiple tags"),
        ({"send_at": datetime(2030, 1, 1, tzinfo=UTC)}, "send_at"),
        ({"envelope_sender": "bounces@example.com"}, "envelope_sender"),
    ],
)
def test_unsupported_feature_raises_naming_it(postmark, http, attrs, feature):
    with pytest.raises(AnymailUnsupportedFeature, match=f"Postmark does not support {feature}"):
        message(**attrs).send()
    assert len(http.calls) == 0
    assert Message.objects.count() == 0  # refused before anything was recorded


def test_amp_body_is_unsupported(postmark, http):
    msg = message()
    msg.attach_alternative("<html amp4email>...</html>", "text/x-amp-html")
    with pytest.raises(AnymailUnsupportedFeature, match="AMP-HTML"):
        msg.send()


def test_ignored_unsupported_features_send_without_them(settings, use_backend, http):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": TOKEN, "IGNORE_UNSUPPORTED_FEATURES": True}
    use_backend(BACKEND)
    expect(http)
    message(
        tags=["first", "second"],
        send_at=datetime(2030, 1, 1, tzinfo=UTC),
        envelope_sender="bounces@example.com",
    ).send()
    assert sent_json(http) == {
        "From": "from@example.com",
        "To": "to@example.com",
        "Subject": "Subject",
        "TextBody": "Text body",
        "Tag": "first",
    }


# Settings


def test_missing_server_token_names_the_setting(settings):
    settings.ANYMAIL = {}
    with pytest.raises(AnymailConfigurationError, match="POSTMARK_SERVER_TOKEN"):
        make_backend(BACKEND)


def test_bare_server_token_setting_is_accepted(settings, use_backend, http):
    settings.ANYMAIL = {}
    settings.POSTMARK_SERVER_TOKEN = "fake-bare-token"
    use_backend(BACKEND)
    expect(http)
    message().send()
    assert http.calls[0].request.headers["X-Postmark-Server-Token"] == "fake-bare-token"


def test_server_token_from_backend_options(settings, http):
    settings.ANYMAIL = {}
    expect(http)
    backend = make_backend(BACKEND, server_token="fake-option-token")
    backend.send_messages([message()])
    assert http.calls[0].request.headers["X-Postmark-Server-Token"] == "fake-option-token"


def test_api_url_setting_changes_the_endpoint(settings, use_backend, http):
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": TOKEN,
        "POSTMARK_API_URL": "https://postmark.example.com/v2",
    }
    use_backend(BACKEND)
    http.add(responses.POST, "https://postmark.example.com/v2/email", json=ok("to@example.com"))
    message().send()
    assert http.calls[0].request.url == "https://postmark.example.com/v2/email"


def test_one_session_serves_every_message_of_a_send_messages_call(postmark, http, monkeypatch):
    expect(http)
    expect(http, json=ok("to@example.com", MESSAGE_ID_2))
    sessions = []
    real_session = requests.Session

    def counting_session():
        session = real_session()
        sessions.append(session)
        return session

    monkeypatch.setattr(requests, "Session", counting_session)
    assert mail.get_connection().send_messages([message(), message()]) == 2
    assert len(sessions) == 1


# ESP errors


def test_auth_failure_raises_api_error_and_records_it(postmark, http):
    body = {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}
    expect(http, json=body, status=401)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 401
    assert isinstance(excinfo.value, requests.HTTPError)
    assert "Request does not contain a valid Server token." in str(excinfo.value)
    assert_recorded(status="failed", esp="postmark", error_contains="valid Server token")


def test_validation_error_raises_api_error_with_postmarks_text(postmark, http):
    # ErrorCode 300 on a single send refuses the whole message (it is also
    # the code for a missing body or too many recipients): an API error.
    body = {
        "ErrorCode": 300,
        "Message": "Error parsing 'To': Illegal email address 'to@example'. "
        "It must contain a valid domain.",
    }
    expect(http, json=body, status=422)
    with pytest.raises(AnymailAPIError) as excinfo:
        message(to=["to@example"]).send()
    assert excinfo.value.status_code == 422
    assert "Error parsing 'To'" in str(excinfo.value)
    assert_recorded(status="failed", esp="postmark", error_contains="Error parsing 'To'")


def test_unverified_sender_raises_api_error(postmark, http):
    body = {
        "ErrorCode": 400,
        "Message": "The 'From' address you supplied (from@example.com) is not a Sender "
        "Signature on your account. Please add and confirm this address in order to be "
        "able to use it in the 'From' field of your messages.",
    }
    expect(http, json=body, status=422)
    with pytest.raises(AnymailAPIError, match="is not a Sender Signature"):
        message().send()


def test_rate_limit_raises_api_error(postmark, http):
    body = {"ErrorCode": 429, "Message": "Rate limit exceeded."}
    expect(http, json=body, status=429)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 429
    assert_recorded(status="failed", esp="postmark", error_contains="Rate limit exceeded")


def test_server_error_raises_api_error(postmark, http):
    expect(http, body="Internal Server Error", status=500, content_type="text/plain")
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.status_code == 500
    assert_recorded(status="failed", esp="postmark", error_contains="Internal Server Error")


def test_network_layer_html_403_raises_api_error(postmark, http):
    html = "<html><head><title>403 Forbidden</title></head><body>403 Forbidden</body></html>"
    expect(http, body=html, status=403, content_type="text/html")
    with pytest.raises(AnymailAPIError, match="403 Forbidden"):
        message().send()


def test_non_json_success_body_raises_api_error(postmark, http):
    expect(http, body="<html>OK</html>", status=200, content_type="text/html")
    with pytest.raises(AnymailAPIError, match="Invalid JSON in Postmark API response"):
        message().send()
    assert_recorded(status="failed", esp="postmark", error_contains="Invalid JSON")


def test_error_code_in_a_success_answer_raises_api_error(postmark, http):
    expect(http, json={"ErrorCode": 412, "Message": "Your account is pending approval."})
    with pytest.raises(AnymailAPIError, match="pending approval"):
        message().send()


@pytest.mark.parametrize(
    "error", [requests.ConnectionError("connection refused"), requests.Timeout("read timed out")]
)
def test_connection_problems_raise_api_error(postmark, http, error):
    expect(http, body=error)
    with pytest.raises(AnymailAPIError) as excinfo:
        message().send()
    assert excinfo.value.__cause__ is error
    assert f"{API}/email" in str(excinfo.value)
    assert TOKEN not in str(excinfo.value)
    assert_recorded(status="failed", esp="postmark", error_contains=str(error))


def test_fail_silently_swallows_api_errors(postmark, http):
    expect(http, json={"ErrorCode": 10, "Message": "Bad or missing Server API token."}, status=401)
    assert send_mail("S", "B", "from@example.com", ["to@example.com"], fail_silently=True) == 0


# Without recording


def test_no_store_sends_without_touching_the_database(
    postmark, no_store, http, django_assert_num_queries
):
    expect(http)
    msg = message()
    with django_assert_num_queries(0):
        assert msg.send() == 1
    assert msg.anymail_status.message_id == MESSAGE_ID
    assert Message.objects.count() == 0


def test_html_alternative_on_plain_django_message(postmark, http):
    expect(http)
    msg = EmailMultiAlternatives("Subject", "Text", "from@example.com", ["to@example.com"])
    msg.attach_alternative("<p>Html</p>", "text/html")
    msg.send()
    data = sent_json(http)
    assert (data["TextBody"], data["HtmlBody"]) == ("Text", "<p>Html</p>")
