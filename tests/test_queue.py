"""Queued sending: recorded as queued in the caller's transaction, sent by a worker
(inline here: no broker) updating the same record, retried with backoff when the
ESP fails transiently, failed at once when it refuses."""

from datetime import timedelta

import pytest
import requests
import responses
from django.core import mail
from django.db import OperationalError

from sending import queueing, resilience, signals
from sending.backends import sandbox
from sending.exceptions import (
    AnymailConfigurationError,
    AnymailRecipientsRefused,
    AnymailUnsupportedFeature,
)
from sending.message import AnymailMessage
from sending.models import Message, MessageStatus
from sending.queueing import QueuedSendOutcome, message_send_queued
from sending.services import suppression_add
from tests.conftest import make_backend

pytestmark = pytest.mark.django_db

QUEUED = "sending.backends.queued.EmailBackend"
SANDBOX = "sending.backends.sandbox.EmailBackend"
RESEND = "sending.backends.resend.EmailBackend"
POSTMARK = "sending.backends.postmark.EmailBackend"
RESEND_URL = "https://api.resend.com/emails"
POSTMARK_URL = "https://api.postmarkapp.com/email"
EMAIL_ID = "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"


def queue_settings(settings, **queue) -> None:
    """Queue settings for a test: no broker (inline), no jitter, small backoff."""
    settings.CELERY_BROKER_URL = ""
    settings.MAILHUB = {
        **settings.MAILHUB,
        "QUEUE": {
            **settings.MAILHUB.get("QUEUE", {}),
            "BACKEND": SANDBOX,
            "JITTER": "none",
            "BACKOFF_BASE": 2.0,
            "BACKOFF_MAX": 30.0,
            "MAX_ATTEMPTS": 4,
            "RATE_LIMITS": {},
            "REDIS_URL": "",
            **queue,
        },
    }


@pytest.fixture(autouse=True)
def inline_queue(settings):
    settings.ANYMAIL = {"RESEND_API_KEY": "re_test", "POSTMARK_SERVER_TOKEN": "pm-test"}
    queue_settings(settings)
    sandbox.IDEMPOTENT_ANSWERS.clear()
    resilience.reset_shared_state()
    yield
    queueing._forget_worker_backends()


def message(**kwargs) -> AnymailMessage:
    return AnymailMessage(
        "Your order",
        "It shipped.",
        "shop@example.com",
        ["ann@example.com", "bob@example.com"],
        **kwargs,
    )


def enqueue(email, backend=SANDBOX, **options) -> int:
    return make_backend(QUEUED, backend=backend, **options).send_messages([email])


def resend_error(http, status, headers=None, name="internal_server_error"):
    http.add(
        responses.POST,
        RESEND_URL,
        status=status,
        headers=headers or {},
        json={"statusCode": status, "name": name, "message": f"HTTP {status} from Resend"},
    )


def seconds_until_next_attempt(record: Message) -> float:
    return (record.next_attempt_at - record.updated_at).total_seconds()


# Recording and sending


def test_queued_message_is_recorded_in_the_callers_transaction_then_sent_on_commit(
    django_capture_on_commit_callbacks,
):
    email = message(tags=["order"])
    with django_capture_on_commit_callbacks() as callbacks:
        assert enqueue(email) == 1
        record = Message.objects.get()
        assert record.status == MessageStatus.QUEUED
        assert record.attempts == 0
        assert record.queue_backend == SANDBOX
        assert record.idempotency_key.startswith("mailhub-")
        assert set(record.recipients.values_list("send_status", flat=True)) == {"pending"}
    assert len(callbacks) == 1

    # The caller sees "queued" for each recipient, with no ESP message id yet.
    assert email.anymail_status.status == {"queued"}
    assert email.anymail_status.message_id is None
    assert email.anymail_status.recipients["bob@example.com"].message_id is None
    assert email.mailhub_record_id == record.pk

    callbacks[0]()
    record.refresh_from_db()
    assert Message.objects.count() == 1  # the same record, updated
    assert record.status == MessageStatus.SENT
    assert record.attempts == 1
    assert (record.esp, record.backend) == ("sandbox", SANDBOX)
    assert record.tags == ["order"]
    recipients = dict(record.recipients.values_list("address", "send_status"))
    assert recipients == {"ann@example.com": "queued", "bob@example.com": "queued"}
    assert all(record.recipients.values_list("esp_message_id", flat=True))


def test_queued_backend_is_chosen_by_setting_like_any_backend(
    use_backend, django_capture_on_commit_callbacks
):
    use_backend(QUEUED, backend=SANDBOX)  # Django 6.1: MAILERS OPTIONS
    with django_capture_on_commit_callbacks(execute=True):
        assert mail.send_mail("Hi", "Body", "shop@example.com", ["ann@example.com"]) == 1
    record = Message.objects.get()
    assert (record.status, record.esp, record.queue_backend) == ("sent", "sandbox", SANDBOX)


def test_with_a_broker_the_task_is_published_only_after_commit(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    from sending import tasks

    published = []
    monkeypatch.setattr(
        tasks.send_queued_message, "apply_async", lambda args, **kw: published.append((args, kw))
    )
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    with django_capture_on_commit_callbacks() as callbacks:
        enqueue(message())
        assert published == []
    callbacks[0]()
    record = Message.objects.get()
    assert published == [((record.pk,), {"countdown": None})]
    assert record.status == MessageStatus.QUEUED  # a worker sends it


def test_broker_down_at_commit_leaves_the_message_queued_for_the_sweep(
    settings, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError as BrokerDown

    from sending import tasks

    def broker_down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.send_queued_message, "apply_async", broker_down)
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/15"
    email = message()
    with django_capture_on_commit_callbacks(execute=True):
        assert enqueue(email) == 1  # the caller isn't failed: the message is recorded
    assert Message.objects.get().status == MessageStatus.QUEUED
    assert email.anymail_status.status == {"queued"}


def test_invalid_message_raises_in_the_caller_and_records_nothing():
    with pytest.raises(AnymailUnsupportedFeature, match="multiple tags"):
        enqueue(message(tags=["one", "two"]), backend=RESEND)
    assert not Message.objects.exists()


def test_all_recipients_suppressed_is_recorded_and_never_queued(
    django_capture_on_commit_callbacks,
):
    suppression_add(address="ann@example.com", reason="bounced")
    suppression_add(address="bob@example.com", reason="complained")
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(AnymailRecipientsRefused):
            enqueue(message())
    assert callbacks == []
    assert Message.objects.get().status == MessageStatus.SUPPRESSED


def test_queued_backend_needs_recording(settings):
    settings.MAILHUB = {**settings.MAILHUB, "STORE": False}
    with pytest.raises(AnymailConfigurationError, match='MAILHUB\\["STORE"\\]'):
        make_backend(QUEUED)


def test_duplicate_task_is_a_no_op(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message())
    record = Message.objects.get()
    outbox = queueing.worker_backend(SANDBOX).outbox
    assert len(outbox) == 1
    assert message_send_queued(message_id=record.pk) == QueuedSendOutcome.SKIPPED
    assert len(outbox) == 1
    record.refresh_from_db()
    assert (record.status, record.attempts) == ("sent", 1)


def test_a_worker_that_loses_the_claim_sends_nothing(
    monkeypatch, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        enqueue(message())
    record = Message.objects.get()
    real_rebuild = queueing.message_rebuild

    def another_worker_claims_it_meanwhile(**kwargs):
        Message.objects.filter(pk=record.pk).update(status=MessageStatus.SENDING)
        return real_rebuild(**kwargs)

    monkeypatch.setattr(queueing, "message_rebuild", another_worker_claims_it_meanwhile)
    assert message_send_queued(message_id=record.pk) == QueuedSendOutcome.SKIPPED
    assert queueing.worker_backend(SANDBOX).outbox == []
    record.refresh_from_db()
    assert record.attempts == 0


def test_pre_send_cancel_in_the_worker_is_recorded(django_capture_on_commit_callbacks):
    def cancel(sender, message, **kwargs):
        from sending.exceptions import AnymailCancelSend

        raise AnymailCancelSend("not today")

    signals.pre_send.connect(cancel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            enqueue(message())
    finally:
        signals.pre_send.disconnect(cancel)
    record = Message.objects.get()
    assert record.status == MessageStatus.FAILED
    assert "cancelled by a pre_send receiver" in record.error


# Retries


def test_transient_error_retries_with_exponential_backoff_then_fails(
    http, django_capture_on_commit_callbacks
):
    resend_error(http, 503, name="service_unavailable")
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(), backend=RESEND)
    record = Message.objects.get()

    waits = []
    for attempt in range(1, 4):
        record.refresh_from_db()
        assert (record.status, record.attempts) == ("queued", attempt)
        assert "HTTP 503 from Resend" in record.error
        waits.append(seconds_until_next_attempt(record))
        assert set(record.recipients.values_list("send_status", flat=True)) == {"pending"}
        # The task arrives when due (its countdown); here we deliver it ourselves.
        with django_capture_on_commit_callbacks(execute=True):
            message_send_queued(message_id=record.pk)
    assert waits == [2.0, 4.0, 8.0]

    record.refresh_from_db()
    assert (record.status, record.attempts, record.next_attempt_at) == ("failed", 4, None)
    assert record.error.startswith("Gave up after 4 attempts.")
    assert set(record.recipients.values_list("send_status", flat=True)) == {"failed"}
    # Every attempt carried the same idempotency key, so Resend can't send it twice.
    keys = {call.request.headers["Idempotency-Key"] for call in http.calls}
    assert keys == {record.idempotency_key}
    assert len(http.calls) == 4


def test_backoff_is_capped_and_jittered(settings, monkeypatch):
    queue_settings(settings, JITTER="full", BACKOFF_BASE=2.0, BACKOFF_MAX=30.0)
    ranges = []
    monkeypatch.setattr(resilience, "uniform", lambda low, high: ranges.append((low, high)) or high)
    failure = resilience.SendFailure(transient=True)
    delays = [resilience.retry_delay(attempt=n, failure=failure) for n in (1, 2, 3, 10)]
    assert ranges == [(0, 2.0), (0, 4.0), (0, 8.0), (0, 30.0)]
    assert delays == [2.0, 4.0, 8.0, 30.0]


def test_transient_error_then_success_updates_the_same_record(
    http, django_capture_on_commit_callbacks
):
    resend_error(http, 502)
    http.add(responses.POST, RESEND_URL, json={"id": EMAIL_ID})
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(), backend=RESEND)
    record = Message.objects.get()
    assert record.status == MessageStatus.QUEUED
    message_send_queued(message_id=record.pk)
    record.refresh_from_db()
    assert (record.status, record.attempts, record.esp_message_id) == ("sent", 2, EMAIL_ID)
    assert Message.objects.count() == 1


def test_permanent_error_fails_at_once(http, django_capture_on_commit_callbacks):
    resend_error(http, 422, name="validation_error")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        enqueue(message(), backend=RESEND)
    record = Message.objects.get()
    assert (record.status, record.attempts, record.next_attempt_at) == ("failed", 1, None)
    assert "HTTP 422 from Resend" in record.error
    assert len(callbacks) == 1  # the first hand-over only: no retry scheduled
    assert len(http.calls) == 1


def test_auth_error_is_permanent(http, django_capture_on_commit_callbacks):
    resend_error(http, 401, name="missing_api_key")
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(), backend=RESEND)
    assert Message.objects.get().status == MessageStatus.FAILED


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(status, http, django_capture_on_commit_callbacks):
    resend_error(http, status, headers={"Retry-After": "120"})
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(), backend=RESEND)
    record = Message.objects.get()
    assert record.status == MessageStatus.QUEUED
    assert seconds_until_next_attempt(record) == 120.0  # not the 2 s backoff


def test_retry_after_as_an_http_date():
    from email.utils import format_datetime

    from django.utils import timezone

    response = requests.Response()
    response.headers["Retry-After"] = format_datetime(
        timezone.now() + timedelta(seconds=90), usegmt=True
    )
    assert 85 <= resilience.retry_after_seconds(response) <= 90


def test_connection_error_is_retried(http, django_capture_on_commit_callbacks):
    http.add(responses.POST, RESEND_URL, body=requests.ConnectionError("connection refused"))
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(), backend=RESEND)
    record = Message.objects.get()
    assert (record.status, record.attempts) == ("queued", 1)


def test_read_timeout_without_idempotency_key_is_unknown_when_told_not_to_risk_it(
    settings, http, django_capture_on_commit_callbacks
):
    queue_settings(settings, RETRY_AMBIGUOUS=False)
    http.add(responses.POST, POSTMARK_URL, body=requests.ReadTimeout("read timed out"))
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(), backend=POSTMARK)
    record = Message.objects.get()
    assert record.status == MessageStatus.UNKNOWN
    assert "may have accepted" in record.error


def test_database_drop_after_the_esp_accepted_leaves_sending_for_the_sweep(
    monkeypatch, django_capture_on_commit_callbacks
):
    from sending import services

    def connection_dropped(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(services, "message_record_outcomes", connection_dropped)
    with django_capture_on_commit_callbacks(execute=True):  # robust: logged, not raised
        assert enqueue(message()) == 1
    assert Message.objects.get().status == MessageStatus.SENDING


@pytest.mark.parametrize(
    ("error", "transient", "ambiguous"),
    [
        (requests.ConnectTimeout("connect timed out"), True, False),
        (requests.ReadTimeout("read timed out"), True, True),
        (requests.ConnectionError("reset by peer"), True, True),
        (ValueError("not an API error"), False, False),
    ],
)
def test_network_errors_are_classified(error, transient, ambiguous):
    from sending.exceptions import AnymailAPIError

    try:
        try:
            raise error
        except Exception as cause:
            raise AnymailAPIError("Error posting") from cause
    except AnymailAPIError as api_error:
        wrapped = api_error
    failure = resilience.classify_failure(wrapped if transient else error)
    assert (failure.transient, failure.ambiguous) == (transient, ambiguous)


@pytest.mark.parametrize(
    ("status", "transient"), [(400, False), (401, False), (422, False), (429, True), (500, True)]
)
def test_http_statuses_are_classified(status, transient):
    from sending.exceptions import AnymailAPIError

    failure = resilience.classify_failure(AnymailAPIError("x", status_code=status))
    assert failure.transient is transient


def test_queue_setting_mistakes_are_system_check_errors(settings):
    from sending.checks import check_queue_settings

    queue_settings(
        settings, BACKEND="sending.backends.nope.EmailBackend", JITTER="some", RATE_LIMITS={"x": 0}
    )
    ids = sorted(error.id for error in check_queue_settings())
    assert ids == ["mailhub.E101", "mailhub.E102", "mailhub.E104"]
    queue_settings(settings)
    assert check_queue_settings() == []


def test_recipients_refused_by_the_esp_are_recorded_rejected_not_retried(
    django_capture_on_commit_callbacks,
):
    email = AnymailMessage("Hi", "Body", "shop@example.com", ["ann+rejected@example.com"])
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(email)
    record = Message.objects.get()
    assert (record.status, record.attempts) == (MessageStatus.REJECTED, 1)
    assert message_send_queued(message_id=record.pk) == QueuedSendOutcome.SKIPPED


def test_send_defaults_are_applied_once(settings, django_capture_on_commit_callbacks):
    settings.ANYMAIL = {
        "SEND_DEFAULTS": {"metadata": {"app": "shop"}},
        "SANDBOX_SEND_DEFAULTS": {"tags": ["transactional"]},
    }
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(message(tags=["order"]))
    record = Message.objects.get()
    assert record.tags == ["transactional", "order"]
    sent = queueing.worker_backend(SANDBOX).outbox[0].anymail_send_params
    assert sent["tags"] == ["transactional", "order"]  # ESP defaults not merged in again
    assert sent["metadata"] == {"app": "shop"}
