"""The send pipeline every mailhub backend shares, and the payload base class.

``AnymailBaseBackend.send_messages`` runs each message through the whole
pipeline, in order:

    pre_send signal -> suppression filter -> build the ESP payload (validates)
    -> record Message + Recipients -> call the ESP -> parse recipient status
    -> record the outcome -> post_send signal -> refuse if no recipient was taken

With recording on, it takes the messages a chunk at a time, so that each
step's writes are one transaction for the chunk (see send_messages).

ESP modules only supply ``build_message_payload``, ``post_to_esp`` and
``parse_recipient_status`` (usually through a ``BasePayload`` subclass); they
never touch the database. Recording is done here, through the functions in
``sending.services``, so it happens the same way for every ESP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, NamedTuple

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

from .. import signals
from ..exceptions import (
    AnymailCancelSend,
    AnymailError,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from ..message import AnymailRecipientStatus, AnymailStatus
from ..resilience import queue_setting, throttle
from ..utils import (
    UNSET,
    Attachment,
    CaseInsensitiveDict,
    EmailAddress,
    aware_datetime,
    combine,
    force_non_lazy,
    force_non_lazy_dict,
    force_non_lazy_list,
    get_anymail_setting,
    get_mailhub_setting,
    last,
    normalize_address,
    parse_address_list,
    parse_single_address,
    recording_enabled,
)

# Set on a message rebuilt from a stored record: its attributes already
# include the send defaults that applied when it was first sent. The value is
# the ESP key it was sent through (whose ESP-specific defaults are in it too),
# or True.
DEFAULTS_APPLIED_ATTR = "_mailhub_defaults_applied"
# Set (by queued sending) to a key sent with every attempt of one message, to
# backends whose ESP accepts one, so that a retry is never delivered twice.
IDEMPOTENCY_KEY_ATTR = "_mailhub_idempotency_key"
# Set to a RecordReuse: the record a send should update instead of inserting a
# new one (a worker sending a queued message; the routing backend failing over).
RECORD_REUSE_ATTR = "_mailhub_reuse_record"


class RecordReuse(NamedTuple):
    """The record a send updates, and the status it must be in to be taken (the claim)."""

    record_id: int
    from_status: str


class _Outcome(NamedTuple):
    """A sent message's outcome waiting to be recorded: its status, or the error."""

    message: EmailMessage
    record: Any  # its sending.models.Message, or None when recording is off
    outcome: AnymailStatus | BaseException
    post_send: bool  # send post_send once recorded (not after an ESP error)


def _suppressed_of(addresses: list[str], suppressed: set[str]) -> set[str]:
    """The normalized addresses among addresses that are in suppressed."""
    if not suppressed:
        return set()
    return {normalize_address(address) for address in addresses} & suppressed


class AnymailBaseBackend(BaseEmailBackend):
    """Base for every mailhub email backend: the send pipeline."""

    #: Display name of the ESP ("Mailgun"); subclasses must set it.
    esp_name: str = ""
    #: The BasePayload subclass that maps a message to this ESP's API.
    payload_class: type[BasePayload] | None = None
    #: This ESP's settings, without the ESP prefix ("API_KEY" is read as
    #: ANYMAIL["MAILGUN_API_KEY"]). Documented in the README and feature matrix.
    required_settings: tuple[str, ...] = ()
    optional_settings: tuple[str, ...] = ()
    #: Whether the ESP takes an idempotency key (the payload's set_idempotency_key),
    #: so a send that may have reached it can be retried without sending twice.
    supports_idempotency_key: bool = False

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        self.ignore_unsupported_features = get_anymail_setting(
            "ignore_unsupported_features", kwargs=kwargs, default=False
        )
        self.ignore_recipient_status = get_anymail_setting(
            "ignore_recipient_status", kwargs=kwargs, default=False
        )
        self.debug_api_requests = get_anymail_setting(
            "debug_api_requests", kwargs=kwargs, default=False
        )
        self.send_defaults = get_anymail_setting("send_defaults", kwargs=kwargs, default={})
        self.esp_send_defaults = get_anymail_setting(
            "send_defaults", esp_name=self.esp_setting_prefix, kwargs=kwargs, default=None
        )
        self.record = recording_enabled()
        self.rate_limit = (queue_setting("RATE_LIMITS") or {}).get(self.esp_key)
        # Django 6.1 passes the MAILERS alias (and rejects unknown OPTIONS);
        # Django 5.2 takes fail_silently. Pass on only what the base expects.
        super().__init__(**kwargs)
        self.fail_silently = fail_silently

    @property
    def esp_setting_prefix(self) -> str:
        """Prefix of this ESP's settings: "MAILGUN" for MAILGUN_API_KEY."""
        return self.esp_name.upper().replace(" ", "_")

    @property
    def esp_key(self) -> str:
        """The lowercase slug stored with records ("mailgun", "amazon_ses")."""
        return self.esp_setting_prefix.lower()

    @property
    def backend_path(self) -> str:
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def open(self) -> bool:
        """Open a connection to the ESP; return True if this call opened it."""
        return False

    def close(self) -> None:
        """Close the connection opened by open()."""

    def send_messages(self, email_messages: list[EmailMessage]) -> int:
        """Send each message through the ESP; return the number sent.

        With recording on, messages go through the pipeline in chunks of
        MAILHUB["RECORD_BATCH_SIZE"]: a chunk's records are written in one
        transaction before its first ESP call, and outcomes are written
        together (at the latest every MAILHUB["RECORD_FLUSH_SECONDS"]), each
        before its message's post_send. An error a caller must see stops the
        send there, as for one message at a time: the messages before it are
        sent and recorded, the ones after it are neither (their pre_send
        receivers may have run).
        """
        if not email_messages:
            return 0
        created_session = self.open()
        num_sent = 0
        try:
            for chunk in self._chunks(email_messages):
                num_sent += self._send_chunk(chunk)
        finally:
            if created_session:
                self.close()
        return num_sent

    def _chunks(self, messages: list[EmailMessage]) -> Iterator[list[EmailMessage]]:
        """Split messages for _send_chunk: one at a time unless recording batches them."""
        size = max(1, int(get_mailhub_setting("RECORD_BATCH_SIZE", 100))) if self.record else 1
        chunk: list[EmailMessage] = []
        for message in messages:
            if hasattr(message, RECORD_REUSE_ATTR):
                # Updating an existing record (a claim that may fail) goes alone.
                if chunk:
                    yield chunk
                    chunk = []
                yield [message]
                continue
            chunk.append(message)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _send_chunk(self, messages: list[EmailMessage]) -> int:
        """Run messages through the pipeline; return how many the ESP took.

        Raises the first error that isn't silenced (fail_silently silences
        AnymailError) once the messages before it are sent and recorded.
        """
        services = self._services()
        ready, stopped_by = self._prepare(messages, services)
        records: list[Any] = [None] * len(ready)
        if services is not None and len(ready) == 1:
            records = [services.message_record_start(backend=self, payload=ready[0][1])]
        elif services is not None and ready:
            payloads = [payload for _, payload in ready]
            records = services.message_record_start_many(backend=self, payloads=payloads)

        flush_seconds = float(get_mailhub_setting("RECORD_FLUSH_SECONDS", 1.0))
        pending: list[_Outcome] = []
        num_sent = 0
        delivered = 0
        try:
            flushed_at = time.monotonic()
            for (message, payload), record in zip(ready, records, strict=True):
                delivered += 1
                try:
                    num_sent += self._deliver(message, payload, record, pending)
                except AnymailError:
                    if not self.fail_silently:
                        raise
                if time.monotonic() - flushed_at >= flush_seconds:
                    self._flush(services, pending)
                    flushed_at = time.monotonic()
        finally:
            try:
                self._flush(services, pending)
            finally:
                if services is not None and delivered < len(records):
                    unsent = records[delivered:]
                    services.message_records_discard(records=unsent)
                    for message, _ in ready[delivered:]:
                        message.__dict__.pop(services.RECORD_ID_ATTR, None)
        if stopped_by is not None:
            raise stopped_by
        return num_sent

    def _prepare(
        self, messages: list[EmailMessage], services: Any
    ) -> tuple[list[tuple[EmailMessage, BasePayload]], BaseException | None]:
        """pre_send, the suppression filter and the ESP payload of each message, in order.

        Returns the (message, payload) pairs to send, and the error that
        stopped preparing, if any: the messages after it are not sent.
        """
        stopped_by: BaseException | None = None

        def stop_at(error: BaseException) -> bool:
            """Whether error ends the send (else the message is skipped: fail_silently)."""
            nonlocal stopped_by
            if isinstance(error, AnymailError) and self.fail_silently:
                return False
            stopped_by = error
            return True

        checked: list[tuple[EmailMessage, list[str]]] = []
        for message in messages:
            message.anymail_status = AnymailStatus()
            try:
                if not self.run_pre_send(message):
                    continue  # cancelled by a pre_send receiver
                if not message.recipients():
                    continue  # Django's own backends send nothing to nobody
                addresses = self._recipient_addresses(message) if services is not None else []
            except BaseException as error:
                if stop_at(error):
                    break
                continue
            checked.append((message, addresses))

        suppressed = set()
        if services is not None:
            every_address = [address for _, addresses in checked for address in addresses]
            suppressed = services.suppressed_addresses(addresses=every_address, esp=self.esp_key)
        ready = []
        for message, addresses in checked:
            try:
                payload = self.build_message_payload(
                    message, self.send_defaults, _suppressed_of(addresses, suppressed)
                )
            except BaseException as error:
                if stop_at(error):
                    break
                continue
            ready.append((message, payload))
        return ready, stopped_by

    def _deliver(
        self, message: EmailMessage, payload: BasePayload, record: Any, pending: list[_Outcome]
    ) -> bool:
        """Call the ESP for one prepared (and recorded) message; return whether it took it.

        The outcome goes on pending, to be recorded (and post_send sent) by
        _flush; a refused or failed send raises after queuing its outcome.
        """
        suppressed_status = {
            address.addr_spec: AnymailRecipientStatus(message_id=None, status="suppressed")
            for address in payload.suppressed_recipients
        }
        if not payload.has_recipients():
            # Every recipient is on the suppression list: don't call the ESP.
            message.anymail_status.set_recipient_status(suppressed_status)
            pending.append(_Outcome(message, record, message.anymail_status, post_send=True))
            self.raise_for_recipient_status(message.anymail_status, None, payload, message)
            return False

        if self.rate_limit:
            throttle(self.esp_key, self.rate_limit)
        try:
            response = self.post_to_esp(payload, message)
            message.anymail_status.esp_response = response
            recipient_status = self.parse_recipient_status(response, payload, message)
        except BaseException as error:
            pending.append(_Outcome(message, record, error, post_send=False))
            raise
        message.anymail_status.set_recipient_status(recipient_status)
        message.anymail_status.set_recipient_status(suppressed_status)
        pending.append(_Outcome(message, record, message.anymail_status, post_send=True))
        self.raise_for_recipient_status(message.anymail_status, response, payload, message)
        return True

    def _flush(self, services: Any, pending: list[_Outcome]) -> None:
        """Record pending outcomes (one transaction), then send their post_send signals.

        Every post_send receiver runs; the first error any raised is raised
        afterwards. pending is emptied.
        """
        outcomes, pending[:] = list(pending), []
        if services is not None:
            recorded = [(item.record, item.outcome) for item in outcomes if item.record]
            if recorded:
                services.message_record_outcomes(outcomes=recorded)
        first_error = None
        for item in outcomes:
            if not item.post_send:
                continue
            try:
                self.run_post_send(item.message)
            except Exception as error:
                first_error = first_error or error
        if first_error is not None:
            raise first_error

    def _services(self) -> Any:
        """Return the recording services, or None when recording is off."""
        if not self.record:
            return None
        from .. import services  # models load only when recording is on

        return services

    def _recipient_addresses(self, message: EmailMessage) -> list[str]:
        """The addr-specs of message's to, cc and bcc (validating them)."""
        addresses = []
        for field in ("to", "cc", "bcc"):
            for address in parse_address_list(getattr(message, field, None) or [], field=field):
                addresses.append(address.addr_spec)
        return addresses

    def find_suppressed(self, message: EmailMessage) -> set[str]:
        """Return the normalized addresses of message's recipients that are suppressed."""
        services = self._services()
        if services is None:
            return set()
        addresses = self._recipient_addresses(message)
        return services.suppressed_addresses(addresses=addresses, esp=self.esp_key)

    def run_pre_send(self, message: EmailMessage) -> bool:
        """Send pre_send; return False if a receiver cancelled the send."""
        try:
            signals.pre_send.send(self.__class__, message=message, esp_name=self.esp_name)
            return True
        except AnymailCancelSend:
            return False

    def run_post_send(self, message: EmailMessage) -> None:
        """Send post_send to every receiver, then re-raise the first error, if any."""
        results = signals.post_send.send_robust(
            self.__class__, message=message, status=message.anymail_status, esp_name=self.esp_name
        )
        for _receiver, response in results:
            if isinstance(response, Exception):
                raise response

    def build_message_payload(
        self, message: EmailMessage, defaults: dict, suppressed: set[str] = frozenset()
    ) -> BasePayload:
        """Return a payload with everything needed to send message to the ESP."""
        if self.payload_class is None:
            raise NotImplementedError(
                f"{self.__class__.__module__}.{self.__class__.__name__} must set payload_class "
                "or implement build_message_payload"
            )
        return self.payload_class(message, defaults, self, suppressed)

    def post_to_esp(self, payload: BasePayload, message: EmailMessage) -> Any:
        """Send payload to the ESP and return its raw response; raise AnymailAPIError on error."""
        raise NotImplementedError(
            f"{self.__class__.__module__}.{self.__class__.__name__} must implement post_to_esp"
        )

    def parse_recipient_status(
        self, response: Any, payload: BasePayload, message: EmailMessage
    ) -> dict[str, AnymailRecipientStatus]:
        """Return {addr_spec: AnymailRecipientStatus} for every recipient sent to."""
        raise NotImplementedError(
            f"{self.__class__.__module__}.{self.__class__.__name__} must implement "
            "parse_recipient_status"
        )

    def raise_for_recipient_status(
        self,
        anymail_status: AnymailStatus,
        response: Any,
        payload: BasePayload,
        message: EmailMessage,
    ) -> None:
        """Raise AnymailRecipientsRefused when no recipient was accepted."""
        if self.ignore_recipient_status:
            return
        if anymail_status.status and anymail_status.status.issubset(
            {"invalid", "rejected", "suppressed"}
        ):
            raise AnymailRecipientsRefused(
                email_message=message, payload=payload, response=response, backend=self
            )


class BasePayload:
    """Everything one message needs to be sent to an ESP.

    The constructor walks the attribute tables below: it merges each
    attribute with the send defaults (by the attribute's combiner), converts
    it, and calls ``set_<attr>(value)``. Every optional feature defaults to
    "unsupported", so an ESP's payload implements only what its API supports.
    """

    # (attr, combiner, converter): combiner merges the message value with its
    # defaults; converter is a function or the name of a payload method.
    base_message_attrs = (
        ("from_email", last, "parse_from_email"),
        ("to", combine, "parse_recipient_list"),
        ("cc", combine, "parse_recipient_list"),
        ("bcc", combine, "parse_recipient_list"),
        ("subject", last, force_non_lazy),
        ("reply_to", combine, "parse_address_list"),
        ("extra_headers", combine, force_non_lazy_dict),
        ("body", last, force_non_lazy),
        ("alternatives", combine, "prepped_alternatives"),
        ("attachments", combine, "prepped_attachments"),
    )
    anymail_message_attrs = (
        ("envelope_sender", last, "parse_envelope_sender"),
        ("metadata", combine, force_non_lazy_dict),
        ("send_at", last, "aware_datetime"),
        ("tags", combine, force_non_lazy_list),
        ("track_clicks", last, None),
        ("track_opens", last, None),
        ("template_id", last, force_non_lazy),
        ("merge_data", combine, force_non_lazy_dict),
        ("merge_global_data", combine, force_non_lazy_dict),
        ("merge_metadata", combine, force_non_lazy_dict),
        ("merge_headers", combine, force_non_lazy_dict),
        ("esp_extra", combine, force_non_lazy_dict),
    )
    esp_message_attrs: tuple = ()  # subclasses can add ESP-specific attrs

    #: Features this ESP supports only in part, with what is limited:
    #: {"tags": "one tag per message"}. Shown as "limited" in the feature matrix.
    feature_limits: dict[str, str] = {}

    def __init__(
        self,
        message: EmailMessage,
        defaults: dict,
        backend: AnymailBaseBackend,
        suppressed: set[str] = frozenset(),
    ) -> None:
        self.message = message
        self.defaults = defaults
        self.backend = backend
        self.esp_name = backend.esp_name
        self.suppressed = suppressed
        self.suppressed_recipients: list[EmailAddress] = []
        #: Every recipient by kind, as given (suppressed ones included).
        self.parsed_recipients: dict[str, list[EmailAddress]] = {"to": [], "cc": [], "bcc": []}
        #: The recipients actually sent to (after suppression), by kind.
        self.recipients_by_kind: dict[str, list[EmailAddress]] = {"to": [], "cc": [], "bcc": []}
        #: Each attribute's combined value before conversion: what the record stores.
        self.effective: dict[str, Any] = {}
        self._html_body_set = False

        defaults_applied = getattr(message, DEFAULTS_APPLIED_ATTR, False)
        if defaults_applied:
            defaults = {}
        esp_defaults = backend.esp_send_defaults
        if esp_defaults is not None and defaults_applied != backend.esp_key:
            # ESP-specific defaults override global ones (not merged)
            defaults = {**defaults, **esp_defaults} if defaults else dict(esp_defaults)
        self.defaults = defaults

        self.init_payload()

        headers = self.pop_special_headers()
        for attr, combiner, converter in (
            self.base_message_attrs + self.anymail_message_attrs + self.esp_message_attrs
        ):
            value = headers.get(attr, UNSET) if attr in headers else getattr(message, attr, UNSET)
            if attr in ("to", "cc", "bcc", "reply_to") and value is not UNSET:
                value = force_non_lazy_list(value)
            if combiner is not None:
                value = combiner(defaults.get(attr, UNSET), value)
            if value is UNSET:
                continue
            self.effective[attr] = value
            if value is None:
                continue  # explicitly unset (e.g. subject=None: use the template's)
            if converter is not None:
                if isinstance(converter, str):
                    converter = getattr(self, converter)
                value = (
                    converter(value, field=attr)
                    if attr in self._address_attrs
                    else converter(value)
                )
            if value is UNSET or value is None:
                continue
            self.apply(attr, value)

        idempotency_key = getattr(message, IDEMPOTENCY_KEY_ATTR, None)
        if idempotency_key and backend.supports_idempotency_key:
            self.set_idempotency_key(idempotency_key)

    _address_attrs = frozenset({"from_email", "to", "cc", "bcc", "reply_to", "envelope_sender"})

    def apply(self, attr: str, value: Any) -> None:
        """Call the setter for attr."""
        if attr == "body":
            if getattr(self.message, "content_subtype", "plain") == "html":
                self.set_html_body(value)
                self._html_body_set = True
            else:
                self.set_text_body(value)
        elif attr == "alternatives":
            for content, mimetype in value:
                self.add_alternative(content, mimetype)
        elif attr == "attachments":
            for attachment in value:
                self.add_attachment(attachment)
        elif attr in ("to", "cc", "bcc"):
            if value:
                getattr(self, f"set_{attr}")(value)
        else:
            getattr(self, f"set_{attr}")(value)

    def pop_special_headers(self) -> dict[str, Any]:
        """Apply Django's SMTP-backend handling of From, Reply-To and To headers.

        A "From" header overrides from_email (which then becomes the envelope
        sender); "Reply-To" overrides reply_to. The headers are taken out of
        extra_headers so they aren't sent twice.
        """
        overrides: dict[str, Any] = {}
        message_headers = getattr(self.message, "extra_headers", None) or {}
        headers = CaseInsensitiveDict(
            combine(self.defaults.get("extra_headers", UNSET), message_headers) or {}
        )
        if "From" in headers:
            overrides["from_email"] = headers.pop("From")
            if getattr(self.message, "envelope_sender", UNSET) in (UNSET, None):
                overrides["envelope_sender"] = self.message.from_email
        if "Reply-To" in headers:
            overrides["reply_to"] = [headers.pop("Reply-To")]
        if "To" in headers:
            self.set_spoofed_to_header(headers.pop("To"))
        if overrides or headers != CaseInsensitiveDict(message_headers):
            overrides["extra_headers"] = dict(headers)
        return overrides

    # Converters

    def parse_from_email(self, value: Any, field: str | None = None) -> EmailAddress:
        return parse_single_address(value, field=field)

    def parse_envelope_sender(self, value: Any, field: str | None = None) -> EmailAddress:
        return parse_single_address(value, field=field)

    def parse_address_list(self, value: Any, field: str | None = None) -> list[EmailAddress]:
        return parse_address_list(value, field=field)

    def parse_recipient_list(self, value: Any, field: str = "to") -> list[EmailAddress]:
        """Parse recipients, leaving out (and remembering) suppressed ones."""
        addresses = parse_address_list(value, field=field)
        self.parsed_recipients[field] = addresses
        kept = []
        for address in addresses:
            if normalize_address(address.addr_spec) in self.suppressed:
                self.suppressed_recipients.append(address)
            else:
                kept.append(address)
        self.recipients_by_kind[field] = kept
        return kept

    def prepped_alternatives(self, alternatives: list) -> list[tuple[str, str]]:
        # Django 5.2+ uses EmailAlternative namedtuples; older code may use tuples
        return [(force_non_lazy(content), mimetype) for (content, mimetype) in alternatives]

    def prepped_attachments(self, attachments: list) -> list[Attachment]:
        str_encoding = getattr(self.message, "encoding", None) or "utf-8"
        return [Attachment(attachment, str_encoding) for attachment in attachments]

    def aware_datetime(self, value: Any) -> Any:
        return aware_datetime(value)

    # Questions an ESP payload asks

    def has_recipients(self) -> bool:
        return any(self.recipients_by_kind.values())

    @property
    def all_recipients(self) -> list[EmailAddress]:
        """Every recipient sent to (to, cc, bcc), after suppression."""
        return [
            address for kind in ("to", "cc", "bcc") for address in self.recipients_by_kind[kind]
        ]

    def is_batch(self) -> bool:
        """Whether this send gives each "to" recipient its own message."""
        return any(
            self.effective.get(attr) is not None
            for attr in ("merge_data", "merge_metadata", "merge_headers")
        )

    def unsupported_feature(self, feature: str) -> None:
        """Raise AnymailUnsupportedFeature for feature, unless ignored by settings."""
        if not self.backend.ignore_unsupported_features:
            raise AnymailUnsupportedFeature(
                f"{self.esp_name} does not support {feature}",
                email_message=self.message,
                payload=self,
                backend=self.backend,
            )

    def serialize_json(self, data: Any) -> str:
        """JSON-encode data, raising AnymailSerializationError for unserializable values."""
        import json

        try:
            return json.dumps(data, default=self._json_default)
        except TypeError as err:
            raise AnymailSerializationError(
                orig_err=err, email_message=self.message, backend=self.backend, payload=self
            ) from None

    @staticmethod
    def _json_default(obj: Any) -> Any:
        from django.utils.functional import Promise

        if isinstance(obj, Promise):
            return str(obj)
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")

    # Setters. Required ones raise NotImplementedError; optional ones
    # default to unsupported.

    def init_payload(self) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement init_payload")

    def set_from_email(self, email: EmailAddress) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement set_from_email")

    def set_to(self, emails: list[EmailAddress]) -> None:
        self.set_recipients("to", emails)

    def set_cc(self, emails: list[EmailAddress]) -> None:
        self.set_recipients("cc", emails)

    def set_bcc(self, emails: list[EmailAddress]) -> None:
        self.set_recipients("bcc", emails)

    def set_recipients(self, recipient_type: str, emails: list[EmailAddress]) -> None:
        for email in emails:
            self.add_recipient(recipient_type, email)

    def add_recipient(self, recipient_type: str, email: EmailAddress) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement add_recipient")

    def set_subject(self, subject: str) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement set_subject")

    def set_reply_to(self, emails: list[EmailAddress]) -> None:
        if emails:
            self.unsupported_feature("reply_to")

    def set_extra_headers(self, headers: dict) -> None:
        if headers:
            self.unsupported_feature("extra_headers")

    def set_spoofed_to_header(self, header_to: str) -> None:
        # Showing recipients a different To than the envelope's is a spammer
        # trick almost no ESP allows.
        self.unsupported_feature("spoofing `To` header")

    def set_text_body(self, body: str) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement set_text_body")

    def set_html_body(self, body: str) -> None:
        raise NotImplementedError(f"{self.__class__.__name__} must implement set_html_body")

    def add_alternative(self, content: str, mimetype: str) -> None:
        if mimetype == "text/html" and not self._html_body_set:
            self.set_html_body(content)
            self._html_body_set = True
        elif mimetype == "text/x-amp-html":
            self.set_amp_body(content)
        else:
            self.unsupported_feature(f"alternative part with type '{mimetype}'")

    def set_amp_body(self, body: str) -> None:
        self.unsupported_feature("AMP-HTML body")

    def add_attachment(self, attachment: Attachment) -> None:
        self.unsupported_feature("attachments")

    def set_envelope_sender(self, email: EmailAddress) -> None:
        self.unsupported_feature("envelope_sender")

    def set_metadata(self, metadata: dict) -> None:
        if metadata:
            self.unsupported_feature("metadata")

    def set_merge_metadata(self, merge_metadata: dict) -> None:
        self.unsupported_feature("merge_metadata")

    def set_merge_headers(self, merge_headers: dict) -> None:
        self.unsupported_feature("merge_headers")

    def set_send_at(self, send_at: Any) -> None:
        self.unsupported_feature("send_at")

    def set_tags(self, tags: list) -> None:
        if tags:
            self.unsupported_feature("tags")

    def set_track_clicks(self, track_clicks: bool) -> None:
        self.unsupported_feature("track_clicks")

    def set_track_opens(self, track_opens: bool) -> None:
        self.unsupported_feature("track_opens")

    def set_template_id(self, template_id: str) -> None:
        self.unsupported_feature("template_id")

    def set_merge_data(self, merge_data: dict) -> None:
        self.unsupported_feature("merge_data")

    def set_merge_global_data(self, merge_global_data: dict) -> None:
        self.unsupported_feature("merge_global_data")

    def set_esp_extra(self, extra: dict) -> None:
        if extra:
            self.unsupported_feature("esp_extra")

    def set_idempotency_key(self, key: str) -> None:
        # Called only when the backend sets supports_idempotency_key.
        raise NotImplementedError(f"{self.__class__.__name__} must implement set_idempotency_key")
