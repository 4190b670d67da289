"""The console backend prints each message and still reports a status."""

import io

import pytest

from sending.backends.console import EmailBackend
from sending.message import AnymailMessage

pytestmark = pytest.mark.django_db


def test_prints_message_and_sets_status():
    stream = io.StringIO()
    message = AnymailMessage("Console subject", "Body", "from@example.com", ["to@example.com"])
    assert EmailBackend(stream=stream).send_messages([message]) == 1
    output = stream.getvalue()
    assert "Subject: Console subject" in output
    assert "To: to@example.com" in output
    assert message.anymail_status.status == {"sent"}
