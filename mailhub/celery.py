"""The Celery app: the worker that sends queued messages, and the periodic sweep.

    .venv/bin/celery -A mailhub worker -l info
    .venv/bin/celery -A mailhub beat -l info

Configured from the Django settings named CELERY_* (CELERY_BROKER_URL comes
from the environment). With no broker set nothing here needs a running
service: queued messages are sent in the sending process once their
transaction commits (sending.queueing.message_enqueue).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailhub.settings")

app = Celery("mailhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
