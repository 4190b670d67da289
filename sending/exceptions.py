"""Exceptions and warnings raised by mailhub's send API and webhooks.

The names and inheritance match the documented Anymail API, so code that
catches ``AnymailAPIError`` (or ``requests.HTTPError``, or ``ValueError`` for
an invalid address) keeps working after moving to mailhub.
"""

import json
from traceback import format_exception_only

from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from requests import HTTPError


class AnymailError(Exception):
    """Base class for exceptions raised by mailhub.

    Carries the context of the failure: the message being sent, the payload
    built for the ESP, and the ESP's response, so the error text can quote
    what the ESP said.
    """

    def __init__(self, *args, **kwargs):
        self.backend = kwargs.pop("backend", None)
        self.email_message = kwargs.pop("email_message", None)
        self.payload = kwargs.pop("payload", None)
        self.status_code = kwargs.pop("status_code", None)
        self.esp_name = kwargs.pop("esp_name", self.backend.esp_name if self.backend else None)
        if isinstance(self, HTTPError):
            # requests.RequestException takes (request, response) kwargs.
            self.response = kwargs.get("response", None)
        else:
            self.response = kwargs.pop("response", None)
        super().__init__(*args, **kwargs)

    def __str__(self) -> str:
        parts = [" ".join([str(arg) for arg in self.args])]
        parts.append(self.describe_cause())
        parts.append(self.describe_response())
        return "\n".join(filter(None, parts))

    def describe_response(self) -> str | None:
        """Return a formatted string of self.status_code and the ESP's response text."""
        if self.response is None:
            return None
        description = f"{self.esp_name or 'ESP'} API response {self.status_code}:"
        try:
            json_response = self.response.json()
            description += "\n" + json.dumps(json_response, indent=2)
        except (AttributeError, KeyError, ValueError):
            try:
                description += " " + self.response.text
            except AttributeError:
                pass
        return description

    def describe_cause(self) -> str | None:
        """Describe the exception that caused this one, if any."""
        cause = self.__cause__
        if cause is None:
            return None
        return "".join(format_exception_only(type(cause), cause)).strip()


class AnymailAPIError(AnymailError):
    """The ESP API failed or returned an error response."""


class AnymailRequestsAPIError(AnymailAPIError, HTTPError):
    """The ESP API call, made with requests, failed or returned an error."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.response is not None:
            self.status_code = self.response.status_code


class AnymailRecipientsRefused(AnymailError):
    """Every recipient of a message was rejected or invalid at send time."""

    def __init__(self, message=None, *args, **kwargs):
        if message is None:
            message = "All message recipients were rejected or invalid"
        super().__init__(message, *args, **kwargs)


class AnymailInvalidAddress(AnymailError, ValueError):
    """An email address could not be parsed or is not acceptable to the ESP."""


class AnymailUnsupportedFeature(AnymailError, ValueError):
    """The message uses a feature the ESP (or mailhub's backend for it) can't send."""


class AnymailSerializationError(AnymailError, TypeError):
    """The message's data could not be serialized for the ESP (usually JSON)."""

    def __init__(self, message=None, orig_err=None, *args, **kwargs):
        if message is None:
            # self.esp_name is not set until super().__init__ runs
            esp_name = kwargs["backend"].esp_name if "backend" in kwargs else "the ESP"
            message = (
                f"Don't know how to send this data to {esp_name}. "
                "Try converting it to a string or number first."
            )
        if orig_err is not None:
            message += f"\n{orig_err}"
        super().__init__(message, *args, **kwargs)


class AnymailCancelSend(AnymailError):
    """Raised by a pre_send receiver to cancel sending a message silently."""


class AnymailWebhookValidationFailure(AnymailError, SuspiciousOperation):
    """A webhook request failed authentication or validation."""


class AnymailConfigurationError(ImproperlyConfigured):
    """A setting is missing or invalid."""

    # Deliberately not an AnymailError: configuration mistakes should not be
    # swallowed by fail_silently.


class AnymailImproperlyInstalled(AnymailConfigurationError, ImportError):
    """A package needed by an ESP backend is not installed."""

    def __init__(self, missing_package: str, install_extra: str = "") -> None:
        message = (
            f"The {missing_package} package is required to use this ESP, "
            f"but isn't installed. (Add it to requirements.txt and pip install it"
            f"{' for ' + install_extra if install_extra else ''}.)"
        )
        super().__init__(message)


# Warnings


class AnymailWarning(Warning):
    """Base warning for mailhub."""


class AnymailInsecureWebhookWarning(AnymailWarning):
    """A webhook is being used without basic auth."""


class AnymailDeprecationWarning(AnymailWarning, DeprecationWarning):
    """A feature or name is deprecated and will be removed."""


class AnymailWebhookPayloadError(AnymailError, ValueError):
    """A webhook request authenticated but its payload can't be understood.

    Malformed JSON or form data, missing fields, or a payload meant for
    another ESP's webhook. Answered with a 400 that says what was wrong; the
    raw request is kept, so it can be reprocessed after a fix.
    """


class AnymailWebhookRetryLater(AnymailWebhookPayloadError):
    """A webhook call that passed auth but can't be completed now (answered 503).

    Something the call needs couldn't be fetched: the message from Amazon S3
    or the ESP's API, an attachment, Amazon SNS's signing certificate. The
    raw call is kept, marked failed with the reason, and the ESP retries (5xx
    is what ESPs retry); it can also be reprocessed once the cause is fixed.
    """

    http_status = 503
