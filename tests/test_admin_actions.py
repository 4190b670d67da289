"""Admin operations on sent mail and webhook calls: resend, and reprocess."""

import html
import json
import re

import pytest
from django.core import mail as django_mail
from django.test import Client
from django.urls import reverse

from sending.models import Message, MessageStatus, Suppression
from sending.services import suppression_add
from tests.admin_helpers import record_id, sandbox_send, staff_client
from tracking.models import WebhookCall, WebhookCallStatus
from tracking.webhooks.sandbox import SandboxTrackingWebhookView

pytestmark = pytest.mark.django_db

MESSAGES = reverse("admin:sending_message_changelist")
RESEND = reverse("admin:sending_message_resend")
CALLS = reverse("admin:tracking_webhookcall_changelist")
TEST_BACKEND = "sending.backends.test.EmailBackend"
SANDBOX = "sending.backends.sandbox.EmailBackend"
RESEND_PERMS = ("sending.view_message", "sending.resend_message")


@pytest.fixture(autouse=True)
def resend_backends(settings):
    settings.MAILHUB = {**settings.MAILHUB, "RESEND_BACKENDS": [TEST_BACKEND]}


@pytest.fixture
def sent():
    return Message.objects.get(
        pk=record_id(sandbox_send("ann@example.com", "bob@example.com", subject="Receipt"))
    )


def resends_of(message):
    return list(Message.objects.filter(resend_of=message))


def text(response):
    return html.unescape(response.content.decode())


# -- resend: the action and its confirmation page ---------------------------


def test_action_leads_to_the_confirmation_page(admin_client, sent):
    response = admin_client.post(
        MESSAGES, {"action": "resend_messages", "_selected_action": [sent.pk]}
    )
    assert response.status_code == 302
    assert response["Location"] == f"{RESEND}?ids={sent.pk}"
    assert resends_of(sent) == []


def test_confirmation_page_shows_what_will_happen_and_sends_nothing(admin_client, sent):
    suppression_add(address="bob@example.com")
    response = admin_client.get(RESEND, {"ids": sent.pk})
    assert response.status_code == 200
    content = text(response)
    summary = " ".join(re.sub(r"<[^>]+>", "", content).split())
    assert "1 message selected: 1 will be sent again to 1 recipient, 1 suppressed recipient" in (
        summary
    )
    assert "bob@example.com" in content  # listed as skipped
    [plan] = response.context["plans"]
    assert (plan.skipped, plan.esp) == (["bob@example.com"], "sandbox")
    choices = dict(response.context["form"].fields["backend"].choices)
    assert set(choices) == {"", SANDBOX, TEST_BACKEND}
    assert resends_of(sent) == []


def test_confirmed_resend_goes_through_the_same_backend(admin_client, admin_user, sent):
    response = admin_client.post(RESEND, {"ids": str(sent.pk), "backend": "", "confirm": "1"})
    [copy] = resends_of(sent)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:sending_message_change", args=[copy.pk])
    assert (copy.esp, copy.status, copy.requested_by) == ("sandbox", MessageStatus.SENT, admin_user)
    assert sorted(copy.recipients.values_list("address", flat=True)) == [
        "ann@example.com",
        "bob@example.com",
    ]


def test_resend_to_another_backend(admin_client, sent):
    django_mail.outbox = []
    admin_client.post(RESEND, {"ids": str(sent.pk), "backend": TEST_BACKEND, "confirm": "1"})
    [copy] = resends_of(sent)
    assert (copy.esp, copy.backend) == ("test", TEST_BACKEND)
    assert len(django_mail.outbox) == 1
    assert django_mail.outbox[0].subject == "Receipt"


def test_preview_for_another_backend_uses_its_suppressions(admin_client, sent):
    suppression_add(address="ann@example.com", esp="test")
    response = admin_client.post(RESEND, {"ids": str(sent.pk), "backend": TEST_BACKEND})
    assert response.status_code == 200
    assert response.context["plans"][0].skipped == ["ann@example.com"]
    own = admin_client.post(RESEND, {"ids": str(sent.pk), "backend": ""})
    assert own.context["plans"][0].skipped == []
    assert resends_of(sent) == []  # previews send nothing


def test_resend_never_sends_to_a_suppressed_address(admin_client, sent):
    django_mail.outbox = []
    suppression_add(address="bob@example.com")
    admin_client.post(RESEND, {"ids": str(sent.pk), "backend": TEST_BACKEND, "confirm": "1"})
    [copy] = resends_of(sent)
    [sent_email] = django_mail.outbox
    assert [a.addr_spec for a in sent_email.anymail_send_params["to"]] == ["ann@example.com"]
    statuses = dict(copy.recipients.values_list("address", "send_status"))
    assert statuses == {"ann@example.com": "sent", "bob@example.com": "suppressed"}


def test_all_suppressed_is_reported_not_sent(admin_client, sent):
    django_mail.outbox = []
    suppression_add(address="ann@example.com")
    suppression_add(address="bob@example.com")
    response = admin_client.post(
        RESEND, {"ids": str(sent.pk), "backend": TEST_BACKEND, "confirm": "1"}, follow=True
    )
    assert django_mail.outbox == []
    messages = [str(m) for m in response.context["messages"]]
    assert any(f"Message #{sent.pk} was not resent" in m for m in messages), messages


def test_resend_many_reports_each_outcome(admin_client, sent):
    other = Message.objects.get(pk=record_id(sandbox_send("cy@example.com")))
    Message.objects.filter(pk=other.pk).update(content_stored=False)
    response = admin_client.post(
        RESEND, {"ids": f"{sent.pk},{other.pk}", "confirm": "1"}, follow=True
    )
    messages = [str(m) for m in response.context["messages"]]
    assert len(resends_of(sent)) == 1 and resends_of(other) == []
    assert any(m.startswith("Resent 1 message(s) as") for m in messages)
    assert any(f"#{other.pk} was not resent: Its content was not stored" in m for m in messages)


@pytest.mark.parametrize(
    ("ids", "status", "message"),
    [
        ("", 400, "Choose at least one message."),
        ("1,x", 400, "'x' is not a record id."),
        ("999999", 404, None),
    ],
)
def test_bad_ids(admin_client, sent, ids, status, message):
    response = admin_client.get(RESEND, {"ids": ids})
    assert response.status_code == status
    if message:
        assert message in text(response)


def test_too_many_messages_is_refused(admin_client, sent, monkeypatch):
    from sending.admin import MessageAdmin

    monkeypatch.setattr(MessageAdmin, "resend_max", 1)
    other = record_id(sandbox_send("cy@example.com"))
    response = admin_client.get(RESEND, {"ids": f"{sent.pk},{other}"})
    assert response.status_code == 400
    assert "At most 1 messages at a time." in text(response)
    response = admin_client.post(
        MESSAGES, {"action": "resend_messages", "_selected_action": [sent.pk, other]}, follow=True
    )
    assert "Select at most 1 messages" in text(response)


def test_unknown_backend_is_refused(admin_client, sent):
    response = admin_client.post(
        RESEND, {"ids": str(sent.pk), "backend": "os.system", "confirm": "1"}
    )
    assert response.status_code == 400
    assert "Select a valid choice" in text(response)
    assert resends_of(sent) == []


def test_resend_needs_its_permission(sent):
    viewer = staff_client("viewer", ("sending.view_message",))
    assert viewer.get(RESEND, {"ids": sent.pk}).status_code == 403
    assert viewer.post(RESEND, {"ids": str(sent.pk), "confirm": "1"}).status_code == 403
    response = viewer.post(MESSAGES, {"action": "resend_messages", "_selected_action": [sent.pk]})
    assert resends_of(sent) == []
    assert response.status_code in (200, 302)  # no such action for this user

    resender = staff_client("resender", RESEND_PERMS)
    resender.post(RESEND, {"ids": str(sent.pk), "confirm": "1"})
    assert len(resends_of(sent)) == 1


def test_resend_anonymous_is_sent_to_login(client, sent):
    response = client.post(RESEND, {"ids": str(sent.pk), "confirm": "1"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert resends_of(sent) == []


def test_resend_needs_csrf(sent, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(RESEND, {"ids": str(sent.pk), "confirm": "1"}).status_code == 403
    assert resends_of(sent) == []


# -- reprocess webhook calls ---------------------------------------------------


@pytest.fixture
def failed_call(client, monkeypatch):
    def broken(self, event):
        raise KeyError("parser bug")

    with monkeypatch.context() as patch:
        patch.setattr(SandboxTrackingWebhookView, "parse_event", broken)
        body = {
            "events": [
                {
                    "id": "evt_1",
                    "event": "delivered",
                    "timestamp": "2026-11-20T12:00:00+00:00",
                    "message_id": "<m1@sandbox.mailhub>",
                    "recipient": "r@example.com",
                }
            ]
        }
        client.post("/anymail/sandbox/tracking/", json.dumps(body), content_type="application/json")
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    return call


def test_reprocess_action_records_the_events(admin_client, failed_call):
    response = admin_client.post(
        CALLS, {"action": "reprocess_calls", "_selected_action": [failed_call.pk]}, follow=True
    )
    failed_call.refresh_from_db()
    assert failed_call.status == WebhookCallStatus.PROCESSED
    assert "Reprocessed 1 webhook call(s): 1 new event(s)." in text(response)


def test_reprocess_is_idempotent(admin_client, failed_call):
    url = reverse("admin:tracking_webhookcall_reprocess", args=[failed_call.pk])
    admin_client.post(url)
    response = admin_client.post(url, follow=True)
    assert "Reprocessed 1 webhook call(s): 0 new event(s)." in text(response)


def test_reprocess_button_on_the_call_page(admin_client, failed_call):
    change = reverse("admin:tracking_webhookcall_change", args=[failed_call.pk])
    assert b"mh-reprocess" in admin_client.get(change).content
    response = admin_client.post(
        reverse("admin:tracking_webhookcall_reprocess", args=[failed_call.pk])
    )
    assert response.status_code == 302 and response["Location"] == change


def test_reprocess_still_failing_is_reported(admin_client, failed_call, monkeypatch):
    monkeypatch.setattr(
        SandboxTrackingWebhookView,
        "parse_event",
        lambda self, e: (_ for _ in ()).throw(KeyError("x")),
    )
    url = reverse("admin:tracking_webhookcall_reprocess", args=[failed_call.pk])
    response = admin_client.post(url, follow=True)
    assert f"Webhook call #{failed_call.pk} still fails" in text(response)


def test_reprocess_view_is_post_only_and_404s_unknown_calls(admin_client, failed_call):
    url = reverse("admin:tracking_webhookcall_reprocess", args=[failed_call.pk])
    assert admin_client.get(url).status_code == 405
    missing = reverse("admin:tracking_webhookcall_reprocess", args=[999999])
    assert admin_client.post(missing).status_code == 404


def test_reprocess_needs_its_permission(failed_call):
    viewer = staff_client("viewer", ("tracking.view_webhookcall",))
    url = reverse("admin:tracking_webhookcall_reprocess", args=[failed_call.pk])
    assert viewer.post(url).status_code == 403
    change = reverse("admin:tracking_webhookcall_change", args=[failed_call.pk])
    assert b"mh-reprocess" not in viewer.get(change).content
    viewer.post(CALLS, {"action": "reprocess_calls", "_selected_action": [failed_call.pk]})
    failed_call.refresh_from_db()
    assert failed_call.status == WebhookCallStatus.FAILED

    operator = staff_client(
        "operator", ("tracking.view_webhookcall", "tracking.reprocess_webhookcall")
    )
    assert operator.post(url).status_code == 302
    failed_call.refresh_from_db()
    assert failed_call.status == WebhookCallStatus.PROCESSED


def test_reprocess_anonymous_is_sent_to_login(client, failed_call):
    response = client.post(reverse("admin:tracking_webhookcall_reprocess", args=[failed_call.pk]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_suppression_model_untouched_by_previews(admin_client, sent):
    admin_client.get(RESEND, {"ids": sent.pk})
    assert Suppression.objects.count() == 0
