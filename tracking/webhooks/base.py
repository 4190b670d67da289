"""The webhook pipeline every ESP's tracking (and inbound) view shares.

``post`` is the whole pipeline: check the size, authenticate (the shared
WEBHOOK_SECRET basic auth, then the ESP's own signature), parse the call
(pure: no database), store the raw call together with what it says in one
transaction, send the signals, answer. Every call that passes
authentication is kept: if parsing or recording fails, the transaction is
rolled back and the raw call stored alone, marked failed with the error,
for reprocessing. ESP modules supply ``validate_request`` (their signature
scheme) and ``parse_events``; they never touch the database.

Answers: 401 for missing or wrong basic auth, 403 for a bad ESP signature
or a stale timestamp, 413 for an oversized body, 400 for a payload that
can't be understood or stored as it is (the raw call is kept, failed), 503
when the raw call can't be stored, recording hit a database error, or
something the call needs can't be fetched now (AnymailWebhookRetryLater),
so the ESP retries, 200 otherwise. An unexpected error in recording is a
500 (the raw call is kept, failed), so the ESP retries.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError, DataError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from sending.exceptions import (
    AnymailInsecureWebhookWarning,
    AnymailWebhookPayloadError,
    AnymailWebhookRetryLater,
    AnymailWebhookValidationFailure,
)
from sending.signals import AnymailEvent, tracking
from sending.utils import (
    get_anymail_setting,
    get_mailhub_setting,
    recording_enabled,
    redact_headers,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class WebhookBasicAuthFailure(AnymailWebhookValidationFailure):
    """Missing or wrong shared-secret basic auth (answered 401)."""


class AnymailBaseWebhookView(View):
    """Base for every ESP webhook view: the shared pipeline."""

    #: Display name ("Mailgun"); the stored ESP key is derived from it.
    esp_name: str = ""
    #: "tracking" or "inbound".
    kind: str = "tracking"
    #: The signal sent once per new event, after it is stored.
    signal = tracking
    #: Warn when WEBHOOK_SECRET is unset (False for ESPs that sign every call
    #: and can't send basic auth).
    warn_if_no_basic_auth = True
    #: The MAILHUB setting that caps the body size (named in the 413 answer).
    max_body_setting = "WEBHOOK_MAX_BODY_BYTES"
    default_max_body_bytes = DEFAULT_MAX_BODY_BYTES
    #: Extra request headers (lowercase) whose values are secrets.
    sensitive_headers: tuple[str, ...] = ()

    http_method_names = ["post", "head", "options"]

    def __init__(self, **kwargs: Any) -> None:
        secrets = get_anymail_setting("webhook_secret", default=[], kwargs=kwargs)
        if isinstance(secrets, str):
            secrets = [secrets]
        self.basic_auth = [self._basic_auth_header(secret) for secret in secrets if secret]
        if self.warn_if_no_basic_auth and not self.basic_auth:
            warnings.warn(
                "Your Anymail webhooks are insecure and open to anyone on the web. "
                "You should set WEBHOOK_SECRET in your ANYMAIL settings. "
                "See 'Securing webhooks' in the Anymail docs.",
                AnymailInsecureWebhookWarning,
                stacklevel=2,
            )
        self.max_body_bytes = get_mailhub_setting(
            self.max_body_setting, self.default_max_body_bytes
        )
        super().__init__(**kwargs)

    @property
    def esp_key(self) -> str:
        return self.esp_name.lower().replace(" ", "_")

    @method_decorator(csrf_exempt)
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return super().dispatch(request, *args, **kwargs)

    def head(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Some ESPs check the URL exists before saving it; answering needs no auth.
        return HttpResponse()

    # The pipeline

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        too_large = self.check_size(request)
        if too_large is not None:
            return too_large
        try:
            self.validate_basic_auth(request)
        except WebhookBasicAuthFailure as err:
            response = error_response(401, str(err))
            response["WWW-Authenticate"] = 'Basic realm="mailhub webhook"'
            return response
        payload_error = None
        try:
            self.validate_request(request)
        except AnymailWebhookRetryLater as err:
            # The signature couldn't be checked yet (e.g. its certificate
            # couldn't be fetched). Store nothing unverified: the ESP retries.
            return error_response(err.http_status, str(err))
        except AnymailWebhookPayloadError as err:
            # The body is too broken to find the ESP's signature in. It did
            # pass basic auth, so keep it (below) like any unparsable call.
            payload_error = err
        except AnymailWebhookValidationFailure as err:
            return error_response(403, str(err))

        call = None
        if recording_enabled():
            from .. import services

            try:
                call, already_processed = services.webhook_call_receive(
                    esp=self.esp_key,
                    kind=self.kind,
                    method=request.method,
                    path=request.path,
                    query_string=request.META.get("QUERY_STRING", ""),
                    content_type=request.content_type or "",
                    headers=self.stored_headers(request),
                    body=request.body,
                )
            except DatabaseError:
                logger.exception("Could not store %s %s webhook call", self.esp_name, self.kind)
                return error_response(503, "The webhook call could not be stored; please retry.")
            if already_processed:
                return JsonResponse(
                    {"status": "ok", "detail": "duplicate delivery, already processed"}
                )

        try:
            if payload_error is not None:
                raise payload_error
            result = self.process(request, call)
        except Exception as err:
            response = self.failure_response(call, err)
            if response is None:
                raise
            return response
        return self.success_response(request, result)

    def failure_response(self, call: Any, error: Exception) -> HttpResponse | None:
        """Keep call (when recording) failed with error raised by process(); answer it.

        A payload that can't be understood, or stored as it is, is a 400: the
        same body would fail again. A database error is a 503, so the ESP
        retries. None (re-raise: a 500) for anything else, which is a bug,
        and for an error raised once the call was recorded (by a signal
        receiver), which leaves the call as it is.
        """
        if call is not None:
            from .. import services

            if isinstance(error, AnymailWebhookPayloadError):
                detail = str(error)
            else:
                detail = f"{type(error).__name__}: {error}"
            try:
                if not services.webhook_call_keep_failed(call=call, error=detail):
                    return None
            except DatabaseError:
                logger.exception("Could not store %s %s webhook call", self.esp_name, self.kind)
                return error_response(503, "The webhook call could not be stored; please retry.")
        if isinstance(error, AnymailWebhookPayloadError):
            return error_response(getattr(error, "http_status", 400), str(error))
        if call is None:
            return None
        if isinstance(error, DataError):
            return error_response(
                400, f"The {self.esp_name} webhook payload has values that can't be stored: {error}"
            )
        if isinstance(error, DatabaseError):
            logger.error(
                "Could not record %s %s webhook call", self.esp_name, self.kind, exc_info=error
            )
            return error_response(503, "The webhook call could not be recorded; please retry.")
        return None

    def process(self, request: HttpRequest, call: Any) -> Any:
        """Parse the request and record what it says; shared by post() and reprocessing."""
        events = self.parse_events_safely(request)
        return self.record(events, call)

    def parse_events_safely(self, request: HttpRequest) -> list[AnymailEvent]:
        """parse_events, with malformed-payload errors turned into AnymailWebhookPayloadError.

        Parsing is pure, so a KeyError or ValueError here means the payload
        isn't shaped the way this ESP documents it.
        """
        try:
            return self.parse_events(request)
        except AnymailWebhookPayloadError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            raise AnymailWebhookPayloadError(
                f"Malformed {self.esp_name} {self.kind} webhook payload "
                f"({type(err).__name__}: {err})"
            ) from err

    def record(self, events: Sequence[AnymailEvent], call: Any) -> list[AnymailEvent]:
        """Store the call with its events (when recording), then signal each new one."""
        if call is not None:
            from .. import services

            def store(call: Any) -> list[AnymailEvent]:
                return services.events_record(esp=self.esp_key, events=events, webhook_call=call)

            new_events = services.webhook_call_record(call=call, record=store, expected=len(events))
        else:
            new_events = list(events)
        for event in new_events:
            self.signal.send(sender=self.__class__, event=event, esp_name=self.esp_name)
        return new_events

    def success_response(self, request: HttpRequest, result: Any) -> HttpResponse:
        count = len(result) if isinstance(result, list) else None
        return JsonResponse({"status": "ok", "events": count})

    # Checks

    def check_size(self, request: HttpRequest) -> HttpResponse | None:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "Invalid Content-Length header.")
        if declared > self.max_body_bytes or len(request.body) > self.max_body_bytes:
            return error_response(
                413,
                f"Webhook body is larger than the {self.max_body_bytes} bytes allowed "
                f'(MAILHUB["{self.max_body_setting}"]).',
            )
        return None

    def validate_basic_auth(self, request: HttpRequest) -> None:
        """Check the shared WEBHOOK_SECRET (any of several, for rotation), in constant time."""
        if not self.basic_auth:
            return
        supplied = request.META.get("HTTP_AUTHORIZATION", "")
        matched = False
        for expected in self.basic_auth:
            # compare every secret, so timing doesn't reveal which one matched
            matched |= hmac.compare_digest(supplied.encode(), expected.encode())
        if not matched:
            raise WebhookBasicAuthFailure(
                "Missing or invalid basic auth in Anymail webhook "
                f"({self.esp_name}): check WEBHOOK_SECRET and the webhook URL's credentials."
            )

    def validate_request(self, request: HttpRequest) -> None:
        """Check the ESP's own signature; raise AnymailWebhookValidationFailure if bad.

        Raise AnymailWebhookPayloadError instead if the body is too malformed
        to find the signature in (answered 400, the raw call kept). The
        default accepts any request that passed basic auth (for ESPs that
        don't sign their webhooks).
        """

    @staticmethod
    def _basic_auth_header(secret: str) -> str:
        return "Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii")

    def stored_headers(self, request: HttpRequest) -> dict[str, str]:
        headers = redact_headers(dict(request.headers))
        sensitive = {name.lower() for name in self.sensitive_headers}
        return {
            name: ("********" if name.lower() in sensitive else value)
            for name, value in headers.items()
        }

    # Parsing helpers for ESP modules

    def parse_events(self, request: HttpRequest) -> list[AnymailEvent]:
        """Return the normalized events in request. Pure: never touches the database."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement parse_events")

    def parse_json_body(self, request: HttpRequest) -> Any:
        """The request's JSON body, or AnymailWebhookPayloadError saying why not."""
        if not request.body:
            raise AnymailWebhookPayloadError(f"Empty {self.esp_name} webhook body: expected JSON.")
        try:
            return json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} webhook body is not valid JSON: {err}"
            ) from err

    def require_content_type(self, request: HttpRequest, *allowed: str) -> None:
        if request.content_type not in allowed:
            raise AnymailWebhookPayloadError(
                f"{self.esp_name} webhooks are sent as {' or '.join(allowed)}, "
                f"not {request.content_type or 'no content type'}."
            )


def error_response(status: int, message: str) -> JsonResponse:
    return JsonResponse({"status": "error", "error": message}, status=status)


def recognize_payload(payload: Any, *, esp_name: str) -> str | None:
    """What payload looks like when its fields give away another ESP's webhook, else None.

    For the errors answering a payload posted to the wrong URL. esp_name's
    own payloads are never "recognized": a malformed one is the caller's to
    describe.
    """
    fields = set(payload) if isinstance(payload, dict) else set()
    first = payload[0] if isinstance(payload, list) and payload else None
    for esps, found, looks_like in (
        (("Unisender Go",), "events_by_user" in fields, "an Unisender Go webhook payload"),
        (
            ("Amazon SES", "Scaleway"),
            bool(fields & {"TopicArn", "SubscribeURL"}),
            "an SNS notification (Amazon SES, Scaleway)",
        ),
        (("Mailgun",), bool(fields & {"event-data", "signature"}), "a Mailgun webhook payload"),
        (("Postmark",), "RecordType" in fields, "a Postmark webhook payload"),
        (("Postmark",), "FromFull" in fields, "a Postmark inbound webhook payload"),
        (("SparkPost",), isinstance(first, dict) and "msys" in first, "a SparkPost webhook batch"),
    ):
        if found and esp_name not in esps:
            return looks_like
    return None


def describe_wrong_payload(payload: Any, expected: str, *, esp_name: str) -> str:
    """An error for a payload that isn't esp_name's: expected, then what payload looks like."""
    looks_like = recognize_payload(payload, esp_name=esp_name)
    if looks_like:
        return f"{expected}; this looks like {looks_like}."
    if isinstance(payload, dict):
        return f"{expected}; its fields are: {', '.join(sorted(map(str, payload))) or 'none'}."
    if isinstance(payload, list):
        return f"{expected}, not a JSON array (another ESP's batch of events?)."
    return f"{expected}, not a JSON {type(payload).__name__}."


def check_timestamp(timestamp: Any, tolerance: int, esp_name: str) -> None:
    """Refuse a signed timestamp outside tolerance seconds of now (a replay)."""
    try:
        when = float(timestamp)
    except (TypeError, ValueError):
        raise AnymailWebhookValidationFailure(
            f"{esp_name} webhook has an invalid timestamp."
        ) from None
    if when > 1e11:  # milliseconds
        when /= 1000
    if abs(time.time() - when) > tolerance:
        raise AnymailWebhookValidationFailure(
            f"{esp_name} webhook timestamp is more than {tolerance} seconds old or in the future "
            "(a replayed request?)."
        )


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def b64decode_or_none(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
