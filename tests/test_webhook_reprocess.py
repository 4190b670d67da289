"""Stored webhook calls can be reprocessed: idempotently, and after a parsing fix."""

import json

import pytest

from sending.exceptions import AnymailWebhookPayloadError
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.services import webhook_call_reprocess
from tracking.webhooks.sandbox import SandboxTrackingWebhookView

pytestmark = pytest.mark.django_db

EVENT = {
    "id": "evt_1",
    "event": "delivered",
    "timestamp": "2026-11-20T12:00:00+00:00",
    "message_id": "<m1@sandbox.mailhub>",
    "recipient": "r@example.com",
}


def post(client, payload):
    return client.post(
        "/anymail/sandbox/tracking/", json.dumps(payload), content_type="application/json"
    )


def test_reprocessing_a_processed_call_changes_nothing(client):
    assert post(client, {"events": [EVENT]}).status_code == 200
    call = WebhookCall.objects.get()
    assert webhook_call_reprocess(call=call) == 0
    assert Event.objects.count() == 1
    call.refresh_from_db()
    assert call.status == WebhookCallStatus.PROCESSED


def test_failed_call_is_reprocessed_after_a_fix(client, monkeypatch):
    original = SandboxTrackingWebhookView.parse_event

    def buggy(self, event):
        raise KeyError("parser bug")

    monkeypatch.setattr(SandboxTrackingWebhookView, "parse_event", buggy)
    response = post(client, {"events": [EVENT]})
    assert response.status_code == 400
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    assert "parser bug" in call.error

    monkeypatch.setattr(SandboxTrackingWebhookView, "parse_event", original)
    assert webhook_call_reprocess(call=call) == 1
    call.refresh_from_db()
    assert (call.status, call.event_count, call.attempts) == (WebhookCallStatus.PROCESSED, 1, 2)
    assert Event.objects.get().event_id == "evt_1"


def test_reprocessing_a_still_broken_call_marks_it_failed(client):
    call = WebhookCall.objects.create(
        esp="sandbox",
        kind="tracking",
        path="/anymail/sandbox/tracking/",
        content_type="application/json",
        headers={"Content-Type": "application/json"},
        body=b"{not json",
        body_sha256="x",
    )
    with pytest.raises(AnymailWebhookPayloadError, match="not valid JSON"):
        webhook_call_reprocess(call=call)
    call.refresh_from_db()
    assert call.status == WebhookCallStatus.FAILED


def test_identical_retry_of_a_processed_call_is_not_stored_again(client):
    post(client, {"events": [EVENT]})
    response = post(client, {"events": [EVENT]})
    assert response.status_code == 200
    assert "duplicate" in response.json()["detail"]
    assert WebhookCall.objects.count() == 1


def test_large_bodies_go_to_storage(client, settings):
    from tracking import services

    events = [{**EVENT, "id": f"evt_{i}", "padding": "x" * 400} for i in range(1000)]
    assert post(client, {"events": events}).status_code == 200
    call = WebhookCall.objects.get()
    assert call.body_size > services.INLINE_BODY_LIMIT
    assert bytes(call.body) == b"" and call.body_file.name
    assert json.loads(call.get_body())["events"][0]["id"] == "evt_0"
    assert Event.objects.count() == 1000
