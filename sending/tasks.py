"""Celery tasks: thin, each fetches by id (or nothing) and calls a service."""

from __future__ import annotations

from celery import shared_task

from . import queueing


@shared_task(name="mailhub.send_queued_message", ignore_result=True)
def send_queued_message(message_id: int) -> str:
    """Send one queued message (retries are scheduled by the service)."""
    return queueing.message_send_queued(message_id=message_id)


@shared_task(name="mailhub.sweep_sending", ignore_result=True)
def sweep_sending() -> dict[str, int]:
    """Resolve messages a crash left "sending"; hand lost queued messages over again."""
    return queueing.messages_sweep().summary()
