"""A development backend: prints each message to the console, calls no ESP.

Like Django's console backend, but each message also gets ``anymail_status``
(and is recorded by mailhub like any other send), so code that reads the
send status works in development.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from django.core.mail.message import EmailMessage

from .test import EmailBackend as TestBackend
from .test import TestPayload


class EmailBackend(TestBackend):
    """Print messages to a stream (stdout by default)."""

    esp_name = "Console"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stream = kwargs.pop("stream", sys.stdout)
        self._lock = threading.RLock()
        super().__init__(*args, **kwargs)

    def post_to_esp(self, payload: TestPayload, message: EmailMessage) -> dict:
        response = super().post_to_esp(payload, message)
        with self._lock:
            msg_data = message.message().as_bytes()
            self.stream.write(msg_data.decode(message.encoding or "utf-8", errors="replace"))
            self.stream.write("\n" + "-" * 79 + "\n")
            self.stream.flush()
        return response
