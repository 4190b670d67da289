"""Failover between ESPs (the routing backend), ESP health, and per-ESP rate limits."""

import socket

import pytest
import responses
from django.core import mail

from sending import queueing, resilience
from sending.backends import sandbox
from sending.exceptions import AnymailAPIError
from sending.message import AnymailMessage
from sending.models import Message, MessageStatus
from tests.conftest import make_backend
from tests.test_queue import QUEUED, RESEND, RESEND_URL, SANDBOX, queue_settings, resend_error

pytestmark = pytest.mark.django_db

ROUTING = "sending.backends.routing.EmailBackend"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture(autouse=True)
def inline_queue(settings):
    settings.ANYMAIL = {"RESEND_API_KEY": "re_test"}
    queue_settings(settings, FAILOVER_BACKENDS=[RESEND, SANDBOX])
    sandbox.IDEMPOTENT_ANSWERS.clear()
    resilience.reset_shared_state()
    yield
    resilience.reset_shared_state()
    queueing._forget_worker_backends()


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(resilience, "monotonic", fake.monotonic)
    monkeypatch.setattr(resilience, "sleep", fake.sleep)
    return fake


def message() -> AnymailMessage:
    return AnymailMessage("Hi", "Body", "shop@example.com", ["ann@example.com"])


# Failover


def test_transient_failure_fails_over_to_the_next_backend_and_records_it(http):
    resend_error(http, 503)
    email = message()
    assert make_backend(ROUTING).send_messages([email]) == 1
    record = Message.objects.get()  # one record, updated by each attempt
    assert (record.status, record.esp, record.backend) == ("sent", "sandbox", SANDBOX)
    assert record.attempts == 2
    assert email.anymail_status.status == {"queued"}  # the sandbox's answer
    assert len(http.calls) == 1


def test_the_same_message_object_sent_again_gets_a_new_record(http):
    resend_error(http, 503)
    email = message()
    backend = make_backend(ROUTING)
    backend.send_messages([email])
    backend.send_messages([email])
    assert Message.objects.count() == 2


def test_permanent_failure_does_not_fail_over(http):
    resend_error(http, 422, name="validation_error")
    with pytest.raises(AnymailAPIError, match="HTTP 422"):
        make_backend(ROUTING).send_messages([message()])
    record = Message.objects.get()
    assert (record.status, record.esp) == ("failed", "resend")


def test_last_backend_failing_raises_its_error(http):
    resend_error(http, 503)
    with pytest.raises(AnymailAPIError, match="HTTP 503"):
        make_backend(ROUTING, backends=[RESEND]).send_messages([message()])


def test_an_unhealthy_esp_is_skipped_until_its_window_passes(settings, http, clock):
    queue_settings(
        settings,
        FAILOVER_BACKENDS=[RESEND, SANDBOX],
        HEALTH_MIN_CALLS=2,
        UNHEALTHY_ERROR_RATE=0.5,
        HEALTH_WINDOW=60,
    )
    resend_error(http, 503)
    backend = make_backend(ROUTING)
    backend.send_messages([message()])
    backend.send_messages([message()])
    assert len(http.calls) == 2
    assert not resilience.esp_health.is_healthy("resend")

    backend.send_messages([message()])
    assert len(http.calls) == 2  # straight to the sandbox
    assert backend.primary.esp_key == "sandbox"

    clock.now += 61
    assert resilience.esp_health.is_healthy("resend")
    http.replace(responses.POST, RESEND_URL, json={"id": "re-1"})
    backend.send_messages([message()])
    assert len(http.calls) == 3
    assert Message.objects.filter(esp="resend", status="sent").count() == 1


def test_queued_send_through_routing_records_the_esp_that_sent_it(
    http, django_capture_on_commit_callbacks
):
    resend_error(http, 500)
    with django_capture_on_commit_callbacks(execute=True):
        make_backend(QUEUED, backend=ROUTING).send_messages([message()])
    record = Message.objects.get()
    assert (record.status, record.esp, record.backend) == ("sent", "sandbox", SANDBOX)
    assert record.queue_backend == ROUTING
    assert record.attempts == 2
    # Resend got the message's idempotency key; the sandbox took over.
    assert http.calls[0].request.headers["Idempotency-Key"] == record.idempotency_key


# Rate limits


def test_in_process_rate_limit_spaces_messages(clock):
    limiter = resilience.RateLimiter()
    assert [limiter.reserve("mailgun", 5) for _ in range(3)] == pytest.approx([0.0, 0.2, 0.4])
    clock.now += 10
    assert limiter.reserve("mailgun", 5) == 0.0


def test_burst_allows_several_at_once(clock):
    limiter = resilience.RateLimiter()
    waits = [limiter.reserve("postmark", 2, burst=3) for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.5])


def test_sends_through_a_rate_limited_esp_wait_their_turn(settings, clock):
    queue_settings(settings, RATE_LIMITS={"sandbox": 10})
    make_backend(SANDBOX).send_messages([message() for _ in range(3)])
    assert clock.slept == [0.1, 0.1]  # each wait also moves the fake clock on
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 3


def test_esps_without_a_limit_are_not_throttled(settings, clock):
    queue_settings(settings, RATE_LIMITS={"mailgun": 1})
    mail.send_mass_mail([("s", "b", "shop@example.com", ["a@example.com"])] * 3)
    assert clock.slept == []


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.skipif(not redis_reachable(), reason="Redis is not running on 127.0.0.1:6379")
def test_rate_limit_is_shared_through_redis(settings):
    import redis

    queue_settings(settings, REDIS_URL="redis://127.0.0.1:6379/15")
    key = f"test-{id(settings)}"
    redis.Redis.from_url("redis://127.0.0.1:6379/15").delete(f"mailhub:rate:{key}")
    worker_a, worker_b = resilience.RateLimiter(), resilience.RateLimiter()
    assert worker_a.reserve(key, 2) == 0.0
    # The other worker sees the slot taken: it waits about half a second.
    assert 0.4 < worker_b.reserve(key, 2) <= 0.5
    assert 0.9 < worker_a.reserve(key, 2) <= 1.0


def test_rate_limit_falls_back_to_in_process_when_redis_is_down(settings, clock):
    queue_settings(settings, REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    limiter = resilience.RateLimiter()
    assert [limiter.reserve("mailgun", 4) for _ in range(2)] == pytest.approx([0.0, 0.25])
