"""Crash recovery: the sweep resolves messages a dead worker left "sending" without a
silent double send, and hands queued messages whose task was lost to a worker again."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from sending import queueing, resilience, services
from sending.backends import sandbox
from sending.message import AnymailMessage
from sending.models import Message, MessageStatus
from sending.queueing import messages_sweep
from tests.conftest import make_backend
from tests.test_queue import POSTMARK, QUEUED, SANDBOX, queue_settings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def inline_queue(settings):
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "pm-test"}
    queue_settings(settings)
    sandbox.IDEMPOTENT_ANSWERS.clear()
    resilience.reset_shared_state()
    yield
    queueing._forget_worker_backends()


def enqueue(backend: str, capture) -> Message:
    with capture():
        make_backend(QUEUED, backend=backend).send_messages(
            [AnymailMessage("Hi", "Body", "shop@example.com", ["ann@example.com"])]
        )
    return Message.objects.get()


def left_sending(record: Message, minutes_ago: int = 30) -> None:
    """What a worker killed mid-send leaves behind."""
    Message.objects.filter(pk=record.pk).update(
        status=MessageStatus.SENDING,
        attempts=1,
        updated_at=timezone.now() - timedelta(minutes=minutes_ago),
    )


def test_stuck_send_without_idempotency_key_support_is_marked_unknown(
    django_capture_on_commit_callbacks,
):
    record = enqueue(POSTMARK, django_capture_on_commit_callbacks)
    left_sending(record)
    result = messages_sweep(stuck_after=600)
    record.refresh_from_db()
    assert result.unknown == [record.pk] and result.resent == []
    assert record.status == MessageStatus.UNKNOWN
    assert "lost track of this send" in record.error
    assert "postmark" in record.error and "resend it" in record.error
    assert list(record.recipients.values_list("send_status", flat=True)) == ["unknown"]


def test_a_send_still_within_the_threshold_is_left_alone(django_capture_on_commit_callbacks):
    record = enqueue(POSTMARK, django_capture_on_commit_callbacks)
    left_sending(record, minutes_ago=1)
    assert messages_sweep(stuck_after=600).summary() == {
        "resent": 0,
        "unknown": 0,
        "redispatched": 0,
    }
    record.refresh_from_db()
    assert record.status == MessageStatus.SENDING


def test_stuck_send_is_resent_with_its_key_and_the_esp_drops_the_repeat(
    monkeypatch, django_capture_on_commit_callbacks
):
    # The worker sent it (the ESP accepted it) and died before recording the answer.
    real_record_outcomes = services.message_record_outcomes

    def connection_dropped(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "message_record_outcomes", connection_dropped)
    with django_capture_on_commit_callbacks(execute=True):
        make_backend(QUEUED, backend=SANDBOX).send_messages(
            [AnymailMessage("Hi", "Body", "shop@example.com", ["ann@example.com"])]
        )
    record = Message.objects.get()
    assert record.status == MessageStatus.SENDING
    first_answer = sandbox.IDEMPOTENT_ANSWERS[record.idempotency_key]
    outbox = queueing.worker_backend(SANDBOX).outbox
    assert len(outbox) == 1

    monkeypatch.setattr(services, "message_record_outcomes", real_record_outcomes)
    left_sending(record)
    with django_capture_on_commit_callbacks(execute=True):
        result = messages_sweep(stuck_after=600)
    assert result.resent == [record.pk]

    record.refresh_from_db()
    assert record.status == MessageStatus.SENT
    assert len(outbox) == 1  # not delivered twice
    first_id = first_answer["recipients"]["ann@example.com"].message_id
    assert record.recipients.get().esp_message_id == first_id
    assert "same idempotency key" in record.error


def test_queued_message_whose_task_was_lost_is_handed_over_again(
    django_capture_on_commit_callbacks,
):
    record = enqueue(SANDBOX, django_capture_on_commit_callbacks)  # never handed over
    with django_capture_on_commit_callbacks(execute=True):
        result = messages_sweep()  # no broker: due now means lost
    assert result.redispatched == [record.pk]
    record.refresh_from_db()
    assert record.status == MessageStatus.SENT


def test_with_a_broker_a_queued_message_gets_time_before_it_counts_as_lost(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    from sending import tasks

    published = []
    monkeypatch.setattr(
        tasks.send_queued_message, "apply_async", lambda args, **kw: published.append(args)
    )
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    record = enqueue(SANDBOX, django_capture_on_commit_callbacks)
    assert messages_sweep().redispatched == []  # QUEUED_LOST_AFTER not passed yet
    Message.objects.filter(pk=record.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert messages_sweep().redispatched == [record.pk]
    assert published == [(record.pk,)]
    # Marked handed over: the next sweep doesn't publish it again at once.
    assert messages_sweep().redispatched == []


def test_sweep_command_dry_run_changes_nothing(django_capture_on_commit_callbacks):
    record = enqueue(POSTMARK, django_capture_on_commit_callbacks)
    left_sending(record)
    out = StringIO()
    call_command("sweep_sending", "--dry-run", "--stuck-after", "600", stdout=out)
    assert '1 stuck messages would be marked "unknown"' in out.getvalue()
    record.refresh_from_db()
    assert record.status == MessageStatus.SENDING

    call_command("sweep_sending", "--stuck-after", "600", stdout=out)
    assert '1 stuck messages were marked "unknown"' in out.getvalue()
    record.refresh_from_db()
    assert record.status == MessageStatus.UNKNOWN


def test_periodic_task_runs_the_sweep(django_capture_on_commit_callbacks):
    from sending.tasks import sweep_sending

    record = enqueue(POSTMARK, django_capture_on_commit_callbacks)
    left_sending(record, minutes_ago=60)
    assert sweep_sending() == {"resent": 0, "unknown": 1, "redispatched": 0}


def test_unknown_messages_are_found_by_the_admin_status_filter(admin_client):
    Message.objects.create(backend=POSTMARK, esp="postmark", status=MessageStatus.UNKNOWN)
    response = admin_client.get("/admin/sending/message/?status__exact=unknown")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 1
