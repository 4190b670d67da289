"""The shared send pipeline (base backend + base payload), through the test backend."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.dispatch import receiver
from django.utils.translation import gettext_lazy

from sending.exceptions import (
    AnymailAPIError,
    AnymailCancelSend,
    AnymailConfigurationError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage, AnymailRecipientStatus
from sending.signals import post_send, pre_send
from sending.utils import get_anymail_setting
from tests.conftest import make_backend

TEST_BACKEND = "sending.backends.test.EmailBackend"

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend(use_backend):
    use_backend(TEST_BACKEND)


def send(**kwargs):
    defaults = {"subject": "Subject", "body": "Body", "from_email": "from@example.com"}
    defaults.setdefault("to", ["to@example.com"])
    message = AnymailMessage(**{**defaults, **kwargs})
    message.send()
    return message


# Attributes and send defaults


def test_anymail_attributes_work_on_a_plain_django_message(backend):
    message = EmailMessage("Subject", "Body", "from@example.com", ["to@example.com"])
    message.tags = ["plain"]
    message.metadata = {"order": "123"}
    message.send()
    assert message.anymail_send_params["tags"] == ["plain"]
    assert message.anymail_send_params["metadata"] == {"order": "123"}
    assert message.anymail_status.status == {"sent"}


def test_send_defaults_merge_as_documented(backend, settings):
    settings.ANYMAIL = {
        "SEND_DEFAULTS": {
            "metadata": {"district": "North", "source": "unknown"},
            "tags": ["myapp", "version3"],
            "track_clicks": True,
            "track_opens": True,
        }
    }
    message = send(
        tags=["welcome"], metadata={"source": "Ads", "user_id": 12345}, track_clicks=False
    )
    params = message.anymail_send_params
    assert params["tags"] == ["myapp", "version3", "welcome"]
    assert params["metadata"] == {"district": "North", "source": "Ads", "user_id": 12345}
    assert params["track_clicks"] is False
    assert params["track_opens"] is True


def test_none_opts_out_of_a_default(backend, settings):
    settings.ANYMAIL = {"SEND_DEFAULTS": {"tags": ["myapp"]}}
    message = send(tags=None)
    assert "tags" not in message.anymail_send_params


def test_esp_send_defaults_override_global_ones(backend, settings):
    settings.ANYMAIL = {
        "SEND_DEFAULTS": {"tags": ["myapp", "version3"]},
        "TEST_SEND_DEFAULTS": {"tags": ["version3"]},
    }
    message = send()
    assert message.anymail_send_params["tags"] == ["version3"]


def test_send_defaults_work_for_django_attributes(backend, settings):
    settings.ANYMAIL = {"SEND_DEFAULTS": {"bcc": ["always-copy@example.com"]}}
    message = send(bcc=["other@example.com"])
    bcc = [address.addr_spec for address in message.anymail_send_params["bcc"]]
    assert bcc == ["always-copy@example.com", "other@example.com"]


def test_merge_data_defaults_merge_per_recipient(backend, settings):
    settings.ANYMAIL = {"SEND_DEFAULTS": {"merge_global_data": {"SITE": "Acme", "OFFER": "5%"}}}
    message = send(merge_global_data={"OFFER": "15%"}, merge_data={"to@example.com": {"N": "1"}})
    assert message.anymail_send_params["merge_global_data"] == {"SITE": "Acme", "OFFER": "15%"}
    assert message.anymail_send_params["merge_data"] == {"to@example.com": {"N": "1"}}


def test_lazy_strings_are_resolved(backend):
    message = send(subject=gettext_lazy("Lazy subject"), tags=[gettext_lazy("lazy tag")])
    assert message.anymail_send_params["subject"] == "Lazy subject"
    assert message.anymail_send_params["tags"] == ["lazy tag"]
    assert isinstance(message.anymail_send_params["tags"][0], str)


@pytest.mark.parametrize(
    "send_at, expected",
    [
        (datetime(2026, 3, 1, 12, 0, tzinfo=UTC), datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        (1772366400, datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
        (1772366400.5, datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_send_at_accepts_datetime_and_timestamps(backend, send_at, expected):
    message = send(send_at=send_at)
    assert message.anymail_send_params["send_at"] == expected


def test_send_at_date_is_midnight_in_current_timezone(backend, settings):
    settings.TIME_ZONE = "America/New_York"
    message = send(send_at=date(2026, 3, 1))
    expected = datetime(2026, 3, 1, tzinfo=ZoneInfo("America/New_York"))
    assert message.anymail_send_params["send_at"] == expected


# Headers with special meaning


def test_from_header_overrides_from_email_and_sets_envelope_sender(backend):
    message = send(headers={"From": "Display <display@example.com>"})
    params = message.anymail_send_params
    assert params["from"].addr_spec == "display@example.com"
    assert params["envelope_sender"] == "from@example.com"
    assert "extra_headers" not in params or "From" not in params["extra_headers"]


def test_reply_to_header_overrides_reply_to(backend):
    message = send(reply_to=["ignored@example.com"], headers={"Reply-To": "reply@example.com"})
    assert [a.addr_spec for a in message.anymail_send_params["reply_to"]] == ["reply@example.com"]


def test_extra_headers_pass_through(backend):
    message = send(headers={"X-Custom": "value", "List-Unsubscribe": "<mailto:u@example.com>"})
    assert message.anymail_send_params["extra_headers"] == {
        "X-Custom": "value",
        "List-Unsubscribe": "<mailto:u@example.com>",
    }


# Bodies


def test_html_content_subtype_sets_html_body(backend):
    message = EmailMessage("s", "<p>html</p>", "from@example.com", ["to@example.com"])
    message.content_subtype = "html"
    message.send()
    assert message.anymail_send_params["html_body"] == "<p>html</p>"
    assert "text_body" not in message.anymail_send_params


def test_html_alternative_sets_html_body(backend):
    message = EmailMultiAlternatives("s", "text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<p>html</p>", "text/html")
    message.send()
    assert message.anymail_send_params["text_body"] == "text"
    assert message.anymail_send_params["html_body"] == "<p>html</p>"


def test_amp_alternative_sets_amp_body(backend):
    message = EmailMultiAlternatives("s", "text", "from@example.com", ["to@example.com"])
    message.attach_alternative("<html amp4email>", "text/x-amp-html")
    message.attach_alternative("<p>html</p>", "text/html")
    message.send()
    assert message.anymail_send_params["amp_body"] == "<html amp4email>"
    assert message.anymail_send_params["html_body"] == "<p>html</p>"


# Addresses


def test_invalid_address_raises_invalid_address_naming_field(backend):
    with pytest.raises(AnymailInvalidAddress, match="Invalid email address 'not-an-address'.*`to`"):
        send(to=["not-an-address"])


def test_unquoted_comma_in_display_name_is_explained(backend):
    with pytest.raises(AnymailInvalidAddress, match="missing quotes around a display-name"):
        send(from_email="Widgets, Inc. <widgets@example.com>")


def test_quoted_comma_in_display_name_is_fine(backend):
    message = send(from_email='"Widgets, Inc." <widgets@example.com>')
    assert message.anymail_send_params["from"].display_name == "Widgets, Inc."


def test_invalid_address_is_also_a_value_error(backend):
    with pytest.raises(ValueError):
        send(cc=["@example.com"])


def test_invalid_address_writes_no_record(backend):
    from sending.models import Message

    with pytest.raises(AnymailInvalidAddress):
        send(to=["bad"])
    assert Message.objects.count() == 0


def test_message_without_recipients_sends_nothing(backend):
    message = AnymailMessage("s", "b", "from@example.com", [])
    assert message.send() == 0
    assert mail.outbox == []


# Signals


def test_pre_send_receiver_can_modify_the_message(backend):
    @receiver(pre_send, weak=False)
    def drop_cc(sender, message, esp_name, **kwargs):
        assert esp_name == "Test"
        message.cc = []

    try:
        message = send(cc=["cc@example.com"])
    finally:
        pre_send.disconnect(drop_cc)
    assert "cc" not in message.anymail_send_params


def test_pre_send_cancel_sends_nothing_and_raises_nothing(backend):
    @receiver(pre_send, weak=False)
    def cancel(sender, message, **kwargs):
        raise AnymailCancelSend("blocked")

    try:
        message = AnymailMessage("s", "b", "from@example.com", ["to@example.com"])
        assert message.send() == 0
    finally:
        pre_send.disconnect(cancel)
    assert mail.outbox == []


def test_post_send_receives_status(backend):
    seen = []

    @receiver(post_send, weak=False)
    def log(sender, message, status, esp_name, **kwargs):
        seen.append((status.status, esp_name))

    try:
        send()
    finally:
        post_send.disconnect(log)
    assert seen == [({"sent"}, "Test")]


def test_every_post_send_receiver_runs_before_an_error_is_raised(backend):
    calls = []

    def failing(sender, **kwargs):
        calls.append("failing")
        raise RuntimeError("receiver bug")

    def other(sender, **kwargs):
        calls.append("other")

    post_send.connect(failing, weak=False)
    post_send.connect(other, weak=False)
    try:
        with pytest.raises(RuntimeError, match="receiver bug"):
            send()
    finally:
        post_send.disconnect(failing)
        post_send.disconnect(other)
    assert calls == ["failing", "other"]


# Recipient status and errors


def test_all_recipients_rejected_raises_recipients_refused(backend):
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com"])
    message.test_response = {
        "recipients": {"a@example.com": AnymailRecipientStatus(None, "rejected")}
    }
    with pytest.raises(AnymailRecipientsRefused):
        message.send()
    assert message.anymail_status.status == {"rejected"}


def test_ignore_recipient_status_setting(backend, settings):
    settings.ANYMAIL = {"IGNORE_RECIPIENT_STATUS": True}
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com"])
    message.test_response = {
        "recipients": {"a@example.com": AnymailRecipientStatus(None, "invalid")}
    }
    assert message.send() == 1


def test_one_accepted_recipient_means_no_exception(backend):
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com", "b@example.com"])
    message.test_response = {
        "recipients": {
            "a@example.com": AnymailRecipientStatus("1", "rejected"),
            "b@example.com": AnymailRecipientStatus("2", "queued"),
        }
    }
    assert message.send() == 1


def test_fail_silently_swallows_api_errors(use_backend):
    backend = make_backend(TEST_BACKEND, fail_silently=True)
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com"])
    message.test_response = AnymailAPIError("ESP is down")
    assert backend.send_messages([message]) == 0


def test_api_errors_reach_the_caller(backend):
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com"])
    message.test_response = AnymailAPIError("ESP is down")
    with pytest.raises(AnymailAPIError, match="ESP is down"):
        message.send()


def test_fail_silently_does_not_hide_configuration_errors(settings):
    settings.ANYMAIL = {}
    with pytest.raises(AnymailConfigurationError):
        get_anymail_setting("api_key", esp_name="MAILGUN")


def test_unsupported_feature_names_the_feature():
    from sending.backends.base import AnymailBaseBackend, BasePayload

    class MinimalPayload(BasePayload):
        def init_payload(self):
            self.data = {}

        def set_from_email(self, email):
            self.data["from"] = email

        def add_recipient(self, kind, email):
            self.data.setdefault(kind, []).append(email)

        def set_subject(self, subject):
            self.data["subject"] = subject

        def set_text_body(self, body):
            self.data["text"] = body

        def set_html_body(self, body):
            self.data["html"] = body

    class MinimalBackend(AnymailBaseBackend):
        esp_name = "Minimal"
        payload_class = MinimalPayload

    message = AnymailMessage("s", "b", "from@example.com", ["to@example.com"], tags=["t"])
    with pytest.raises(AnymailUnsupportedFeature, match="Minimal does not support tags"):
        MinimalBackend().build_message_payload(message, {})
    ignoring = MinimalBackend(ignore_unsupported_features=True)
    payload = ignoring.build_message_payload(message, {})
    assert payload.data["subject"] == "s"


def test_serialize_json_raises_serialization_error():
    from decimal import Decimal

    from sending.backends.test import EmailBackend

    backend = EmailBackend()
    message = AnymailMessage("s", "b", "from@example.com", ["to@example.com"])
    payload = backend.build_message_payload(message, {})
    with pytest.raises(AnymailSerializationError, match="Decimal"):
        payload.serialize_json({"total": Decimal("19.99")})
    with pytest.raises(TypeError):
        payload.serialize_json({"total": Decimal("19.99")})


def test_one_connection_for_many_messages(backend):
    from sending.backends.test import EmailBackend

    opened = []

    class CountingBackend(EmailBackend):
        def open(self):
            opened.append(True)
            return super().open()

    messages = [
        AnymailMessage("s", "b", "from@example.com", [f"{i}@example.com"]) for i in range(3)
    ]
    assert CountingBackend().send_messages(messages) == 3
    assert len(opened) == 1
