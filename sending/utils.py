"""Shared helpers: the settings accessor, address parsing, attachments, merging."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from datetime import UTC, date, datetime
from email.mime.base import MIMEBase
from email.utils import formatdate, getaddresses, parsedate_to_datetime, unquote
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.mail.message import sanitize_address
from django.utils.encoding import force_str
from django.utils.functional import Promise
from django.utils.timezone import get_current_timezone, is_naive, make_aware
from requests.structures import CaseInsensitiveDict

from .exceptions import AnymailConfigurationError, AnymailInvalidAddress

BASIC_NUMERIC_TYPES = (int, float)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()  # Marks "no value given", where None is a real value


# ---------------------------------------------------------------------------
# Settings


def get_anymail_setting(
    name: str,
    default: Any = UNSET,
    esp_name: str | None = None,
    kwargs: MutableMapping | None = None,
    allow_bare: bool = False,
) -> Any:
    """Return an Anymail setting, looked up the documented way.

    In order: ``kwargs[name]`` (popped, so the caller can pass the rest on),
    ``settings.ANYMAIL["<ESP>_<NAME>"]``, ``settings.ANYMAIL_<ESP>_<NAME>``,
    and with ``allow_bare`` ``settings.<ESP>_<NAME>``. Raises
    AnymailConfigurationError naming the setting to add when there is no
    value and no default.
    """
    try:
        value = kwargs.pop(name)
        if name in ("username", "password", "api_key") and value is not None:
            value = str(value)
        return value
    except (AttributeError, KeyError):
        pass

    setting = f"{esp_name}_{name}" if esp_name else name
    setting = setting.upper()
    anymail_setting = f"ANYMAIL_{setting}"

    try:
        return settings.ANYMAIL[setting]
    except (AttributeError, KeyError):
        pass
    try:
        return getattr(settings, anymail_setting)
    except AttributeError:
        pass
    if allow_bare:
        try:
            return getattr(settings, setting)
        except AttributeError:
            pass

    if default is UNSET:
        message = f"You must set {setting} in your ANYMAIL settings dict"
        message += f" (or {anymail_setting}"
        if allow_bare:
            message += f" or {setting}"
        message += " in settings.py)."
        raise AnymailConfigurationError(message)
    return default


def get_mailhub_setting(name: str, default: Any = UNSET) -> Any:
    """Return ``settings.MAILHUB[name]``, or default."""
    mailhub_settings = getattr(settings, "MAILHUB", None) or {}
    try:
        return mailhub_settings[name]
    except KeyError:
        if default is UNSET:
            raise AnymailConfigurationError(
                f'You must set MAILHUB["{name}"] in settings.py.'
            ) from None
        return default


def recording_enabled() -> bool:
    """Whether mailhub records sends and webhooks in the database."""
    return bool(get_mailhub_setting("STORE", True))


# ---------------------------------------------------------------------------
# Merging message attributes with send defaults


def combine(*args: Any) -> Any:
    """Combine a message attribute with its defaults, left to right.

    Lists concatenate and dicts merge (one level deep, so merge_data for one
    recipient merges too); any other value replaces. An explicit None drops
    everything before it (the documented way to opt out of a default), and
    UNSET values are skipped.
    """
    result = UNSET
    for value in args:
        if value is None:
            result = None
        elif value is UNSET:
            continue
        elif result is UNSET or result is None:
            result = _copy_container(value)
        elif isinstance(value, (list, tuple)) and isinstance(result, list):
            result = result + list(value)
        elif isinstance(value, Mapping) and isinstance(result, dict):
            for key, inner in value.items():
                if isinstance(inner, Mapping) and isinstance(result.get(key), dict):
                    result[key] = {**result[key], **inner}
                else:
                    result[key] = inner
        else:
            result = _copy_container(value)
    return result


def _copy_container(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def last(*args: Any) -> Any:
    """Return the last argument that is not UNSET (None included)."""
    for value in reversed(args):
        if value is not UNSET:
            return value
    return UNSET


def update_deep(dct: MutableMapping, other: Mapping) -> MutableMapping:
    """Merge other into dct, recursing into nested mappings; other wins."""
    for key, value in other.items():
        if key in dct and isinstance(dct[key], MutableMapping) and isinstance(value, Mapping):
            update_deep(dct[key], value)
        else:
            dct[key] = value
    return dct


# ---------------------------------------------------------------------------
# Lazy values


def force_non_lazy(value: Any) -> Any:
    """Return value with any lazy translation string resolved."""
    if isinstance(value, Promise):
        return force_str(value)
    return value


def force_non_lazy_list(value: Any) -> Any:
    if value is None:
        return None
    return [force_non_lazy(item) for item in value]


def force_non_lazy_dict(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {key: force_non_lazy_dict(item) for key, item in value.items()}
    return force_non_lazy(value)


# ---------------------------------------------------------------------------
# Addresses


class EmailAddress:
    """A parsed email address: display_name, addr_spec, username and domain."""

    __slots__ = ("addr_spec", "display_name", "domain", "username")

    def __init__(self, display_name: str = "", addr_spec: str = "") -> None:
        self.display_name = display_name
        self.addr_spec = addr_spec
        try:
            self.username, self.domain = addr_spec.rsplit("@", 1)
        except ValueError:
            self.username, self.domain = addr_spec, ""

    @property
    def address(self) -> str:
        """The full address, RFC 5322-quoted where needed ("Name" <a@b>)."""
        return self.formataddr()

    def formataddr(self, encoding: str | None = None) -> str:
        """Format as an address header value, encoding a non-ASCII name if asked."""
        if not self.display_name:
            return self.addr_spec
        return sanitize_address((self.display_name, self.addr_spec), encoding or "utf-8")

    def __str__(self) -> str:
        return self.address

    def __repr__(self) -> str:
        return f"EmailAddress({self.display_name!r}, {self.addr_spec!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EmailAddress)
            and self.display_name == other.display_name
            and self.addr_spec == other.addr_spec
        )

    def __hash__(self) -> int:
        return hash((self.display_name, self.addr_spec))


def normalize_address(addr_spec: str) -> str:
    """The form mailhub stores and matches an address in (lowercase, trimmed)."""
    return addr_spec.strip().lower()


@lru_cache(maxsize=4096)
def _getaddresses(address_list: tuple[str, ...]) -> list[tuple[str, str]]:
    # Cached: a send parses the same recipients more than once (suppression
    # check, payload, record), and getaddresses is slow.
    return getaddresses(address_list)


def parse_address_list(address_list: Any, field: str | None = None) -> list[EmailAddress]:
    """Parse addresses into EmailAddress objects, raising AnymailInvalidAddress.

    Accepts a str (which may hold several comma-separated addresses) or a
    list of str. A display name with a comma must be quoted, per RFC 5322.
    """
    if isinstance(address_list, str) or isinstance(address_list, Promise):
        address_list = [address_list]
    if address_list is None or address_list == [None]:
        return []

    address_list = [force_str(address) for address in address_list]
    name_email_pairs = _getaddresses(tuple(address_list))
    if name_email_pairs == [] and address_list == [""]:
        name_email_pairs = [("", "")]  # reported as invalid below

    parsed = [EmailAddress(display_name, email) for display_name, email in name_email_pairs]

    # getaddresses is forgiving: it splits unquoted commas and returns
    # pieces without an @. Catch those here rather than at the ESP.
    for address in parsed:
        if not address.username or not address.domain or "@" in address.domain:
            where = f" in `{field}`" if field else ""
            if len(parsed) > len(address_list):
                where += " (maybe missing quotes around a display-name?)"
            raise AnymailInvalidAddress(
                f"Invalid email address '{address.addr_spec or address_list}' "
                f"parsed from '{', '.join(address_list)}'{where}."
            )
    return parsed


def parse_single_address(address: Any, field: str | None = None) -> EmailAddress:
    """Parse exactly one address, raising AnymailInvalidAddress otherwise."""
    parsed = parse_address_list([address], field=field)
    count = len(parsed)
    if count > 1:
        where = f" in `{field}`" if field else ""
        raise AnymailInvalidAddress(
            f"Only one email address is allowed{where}; found {count} in '{address}'."
        )
    if count < 1:
        raise AnymailInvalidAddress(f"Invalid empty email address in `{field}`.")
    return parsed[0]


# ---------------------------------------------------------------------------
# Attachments


class Attachment:
    """A normalized attachment: name, content (bytes), mimetype, inline, cid."""

    def __init__(self, attachment: Any, encoding: str = "utf-8") -> None:
        self._attachment = attachment
        self.inline = False
        self.content_id: str | None = None
        self.cid = ""  # content_id without the angle brackets

        if isinstance(attachment, MIMEBase):
            self.name = attachment.get_filename()
            self.content = attachment.get_payload(decode=True)
            if self.content is None:
                # A message/rfc822 part, for example: keep its serialized form
                self.content = attachment.as_bytes()
            self.mimetype = attachment.get_content_type()
            content_disposition = attachment.get_content_disposition()
            if content_disposition == "inline" or (
                content_disposition is None and "Content-ID" in attachment
            ):
                self.inline = True
                self.content_id = attachment["Content-ID"]
                if self.content_id:
                    self.cid = unquote(self.content_id)
        else:
            # Django's (filename, content, mimetype) namedtuple or plain tuple
            (self.name, self.content, self.mimetype) = attachment

        self.name = force_non_lazy(self.name)
        if isinstance(self.content, str):
            self.content = self.content.encode(encoding)
        if not self.mimetype:
            guessed = mimetypes.guess_type(self.name or "")[0]
            self.mimetype = guessed or "application/octet-stream"

    def __repr__(self) -> str:
        details = [
            f"name={self.name!r}",
            f"mimetype={self.mimetype!r}",
            f"size={len(self.content)}",
        ]
        if self.inline:
            details.insert(0, "inline")
            details.append(f"content_id={self.content_id!r}")
        return f"Attachment<{', '.join(details)}>"

    @property
    def b64content(self) -> str:
        """The content, base64-encoded as ASCII text."""
        return base64.b64encode(self.content).decode("ascii")


# ---------------------------------------------------------------------------
# Time


def aware_datetime(value: Any) -> datetime:
    """Convert a datetime, date or POSIX timestamp to an aware datetime.

    A date or naive datetime is taken in Django's current timezone, as the
    documented ``send_at`` says.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, BASIC_NUMERIC_TYPES):
        return datetime.fromtimestamp(value, tz=UTC)
    else:
        raise TypeError(f"Expected a datetime, date or timestamp for send_at, not {value!r}")
    if is_naive(dt):
        dt = make_aware(dt, get_current_timezone())
    return dt


def rfc2822date(dt: datetime) -> str:
    """Format an aware datetime as an RFC 2822 date (for form-encoded APIs)."""
    return formatdate(dt.timestamp(), localtime=False, usegmt=True).replace(" GMT", " +0000")


def parse_rfc2822date(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Secrets


REDACTED = "********"
SENSITIVE_HEADERS = frozenset(
    name.lower()
    for name in (
        "Authorization",
        "Proxy-Authorization",
        "X-Api-Key",
        "X-Postmark-Server-Token",
        "X-Postmark-Account-Token",
        "Api-Key",
        "X-Auth-Token",
        "Cookie",
        "Set-Cookie",
        "X-Mailgun-Signature",
        "X-Server-API-Key",
    )
)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of headers with credentials replaced, safe to store or print."""
    return {
        name: (REDACTED if name.lower() in SENSITIVE_HEADERS else value)
        for name, value in headers.items()
    }


def pk_batches(queryset: Any, batch_size: int) -> Iterator[list[Any]]:
    """The primary keys of queryset's rows, ascending, in lists of at most batch_size.

    Each batch is its own query that resumes after the last key seen, so rows
    the caller deletes or changes between batches don't shift the next one,
    and no batch rescans what earlier ones covered.
    """
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        batch = list(page.values_list("pk", flat=True)[:batch_size])
        if not batch:
            return
        yield batch
        last = batch[-1]


def store_content_once(prefix: str, sha256: str, content: bytes) -> str:
    """Save content in Django storage under prefix and its hash, once; return the name.

    Content-addressed: the same bytes (an attachment sent or received again,
    a repeated delivery) are stored once and shared by every row using them.
    """
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    name = f"{prefix}/{sha256[:2]}/{sha256}"
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(content))
    return name


def delete_unreferenced_files(names: Iterable[str], references: Iterable[tuple[Any, str]]) -> int:
    """Delete the stored files in names that no row refers to any more; return how many.

    mailhub stores attachments, raw MIME and large webhook bodies once per
    content hash, shared by every row with the same bytes; references are
    the (model, file field) pairs that can point at these names. Run it after
    the commit that dropped the references (transaction.on_commit), so each
    file is checked against what is really there.
    """
    from django.core.files.storage import default_storage

    remaining = set(names)
    for model, field in references:
        if not remaining:
            break
        remaining -= set(
            model._default_manager.filter(**{f"{field}__in": remaining}).values_list(
                field, flat=True
            )
        )
    for name in sorted(remaining):
        default_storage.delete(name)
    return len(remaining)


__all__ = [
    "UNSET",
    "Attachment",
    "CaseInsensitiveDict",
    "EmailAddress",
    "aware_datetime",
    "delete_unreferenced_files",
    "get_anymail_setting",
    "get_mailhub_setting",
    "normalize_address",
    "parse_address_list",
    "parse_single_address",
    "pk_batches",
    "redact_headers",
    "store_content_once",
]
