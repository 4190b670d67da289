"""The ESP feature matrix, worked out from the backends themselves.

Each feature is probed by building a payload for a message that uses it:
a backend that raises AnymailUnsupportedFeature doesn't support it; one
whose payload lists the feature in ``feature_limits`` supports it in part.
Nothing is declared twice, so the matrix can't drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils.module_loading import import_string

from .exceptions import AnymailUnsupportedFeature
from .message import AnymailMessage

#: Every ESP backend, in the order the matrix shows them.
ESP_BACKENDS = (
    "sending.backends.amazon_ses.EmailBackend",
    "sending.backends.brevo.EmailBackend",
    "sending.backends.mailersend.EmailBackend",
    "sending.backends.mailgun.EmailBackend",
    "sending.backends.mailjet.EmailBackend",
    "sending.backends.mailtrap.EmailBackend",
    "sending.backends.mandrill.EmailBackend",
    "sending.backends.postal.EmailBackend",
    "sending.backends.postmark.EmailBackend",
    "sending.backends.resend.EmailBackend",
    "sending.backends.scaleway.EmailBackend",
    "sending.backends.sendgrid.EmailBackend",
    "sending.backends.sparkpost.EmailBackend",
    "sending.backends.unisender_go.EmailBackend",
)

YES, NO, LIMITED = "yes", "no", "limited"

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def _html(message: AnymailMessage) -> None:
    message.attach_alternative("<p>html</p>", "text/html")


def _amp(message: AnymailMessage) -> None:
    message.attach_alternative("<html amp4email></html>", "text/x-amp-html")
    message.attach_alternative("<p>html</p>", "text/html")


def _attachment(message: AnymailMessage) -> None:
    message.attach("file.txt", b"content", "text/plain")


def _inline_image(message: AnymailMessage) -> None:
    _html(message)
    message.attach_inline_image(PNG, filename="image.png")


def _batch(message: AnymailMessage) -> None:
    message.merge_data = {"to@example.com": {"name": "To"}, "to2@example.com": {"name": "To 2"}}


@dataclass(frozen=True)
class Feature:
    key: str
    label: str
    apply: Callable[[AnymailMessage], None]
    needs_template: bool = False


def _set(**attrs: object) -> Callable[[AnymailMessage], None]:
    def apply(message: AnymailMessage) -> None:
        for name, value in attrs.items():
            setattr(message, name, value)

    return apply


FEATURES = (
    Feature("html", "HTML body", _html),
    Feature("amp", "AMP body", _amp),
    Feature("cc_bcc", "cc and bcc", _set(cc=["cc@example.com"], bcc=["bcc@example.com"])),
    Feature("reply_to", "reply_to", _set(reply_to=["reply@example.com"])),
    Feature("extra_headers", "extra headers", _set(extra_headers={"X-Custom": "1"})),
    Feature("attachments", "attachments", _attachment),
    Feature("inline_images", "inline images", _inline_image),
    Feature("envelope_sender", "envelope_sender", _set(envelope_sender="bounce@example.com")),
    Feature("metadata", "metadata", _set(metadata={"order": "1"})),
    Feature("tags", "tags", _set(tags=["one"])),
    Feature("multiple_tags", "several tags", _set(tags=["one", "two"])),
    Feature("track_opens", "track_opens", _set(track_opens=True)),
    Feature("track_clicks", "track_clicks", _set(track_clicks=True)),
    Feature("send_at", "send_at", _set(send_at=datetime(2030, 1, 1, tzinfo=UTC))),
    Feature("template_id", "stored templates", _set(template_id="123"), needs_template=True),
    Feature("merge_data", "batch with merge_data", _batch),
    Feature("merge_global_data", "merge_global_data", _set(merge_global_data={"site": "x"})),
    Feature(
        "merge_metadata",
        "merge_metadata",
        _set(merge_metadata={"to@example.com": {"k": "1"}, "to2@example.com": {"k": "2"}}),
    ),
    Feature(
        "merge_headers",
        "merge_headers",
        _set(merge_headers={"to@example.com": {"X-H": "1"}, "to2@example.com": {"X-H": "2"}}),
    ),
    Feature("esp_extra", "esp_extra", _set(esp_extra={})),
)


@dataclass
class EspFeatures:
    esp_name: str
    backend_path: str
    settings_prefix: str
    required_settings: tuple[str, ...]
    optional_settings: tuple[str, ...]
    support: dict[str, str]
    limits: dict[str, str]


def _probe_message(feature: Feature, template_id: str | None = None) -> AnymailMessage:
    message = AnymailMessage(
        subject="Subject",
        body="Body",
        from_email="from@example.com",
        to=["to@example.com", "to2@example.com"],
    )
    feature.apply(message)
    if template_id is not None or feature.needs_template:
        # As documented for stored templates: the template supplies the
        # subject and body (many ESPs refuse both at once).
        message.subject = None
        message.body = ""
    if template_id is not None:
        message.template_id = template_id
    return message


def _builds(backend: object, message: AnymailMessage) -> bool:
    try:
        backend.build_message_payload(message, {})
    except AnymailUnsupportedFeature:
        return False
    return True


def probe_backend(backend_path: str) -> EspFeatures:
    """Work out which features backend_path supports, by trying each one."""
    backend_class = import_string(backend_path)
    placeholder = {name.lower(): "placeholder" for name in backend_class.required_settings}
    backend = backend_class(**placeholder)
    limits = dict(getattr(backend.payload_class, "feature_limits", {}) or {})
    support = {}
    for feature in FEATURES:
        if _builds(backend, _probe_message(feature)):
            support[feature.key] = LIMITED if feature.key in limits else YES
        elif feature.key in limits:
            # Supported under conditions the probe doesn't meet (a setting,
            # a plan): the limit note says which.
            support[feature.key] = LIMITED
        elif feature.key != "template_id" and _builds(
            backend, _probe_message(feature, template_id="123")
        ):
            # Some ESPs take merge data only together with a stored template.
            support[feature.key] = LIMITED
            limits.setdefault(feature.key, "only with a stored template (template_id)")
        else:
            support[feature.key] = NO
    return EspFeatures(
        esp_name=backend.esp_name,
        backend_path=backend_path,
        settings_prefix=backend.esp_setting_prefix,
        required_settings=tuple(backend_class.required_settings),
        optional_settings=tuple(backend_class.optional_settings),
        support=support,
        limits=limits,
    )


def feature_matrix_markdown(backend_paths: tuple[str, ...] = ESP_BACKENDS) -> str:
    """The feature matrix and settings table, as Markdown."""
    esps = [probe_backend(path) for path in backend_paths]
    lines = ["| Feature | " + " | ".join(esp.esp_name for esp in esps) + " |"]
    lines.append("| --- |" + " :-: |" * len(esps))
    for feature in FEATURES:
        cells = [esp.support[feature.key] for esp in esps]
        lines.append(f"| {feature.label} | " + " | ".join(cells) + " |")
    lines.append("")
    limited = [
        (esp.esp_name, key, note) for esp in esps for key, note in sorted(esp.limits.items())
    ]
    if limited:
        lines.append('Limits (the "limited" cells):')
        lines.append("")
        labels = {feature.key: feature.label for feature in FEATURES}
        for esp_name, key, note in limited:
            lines.append(f"- {esp_name}, {labels.get(key, key)}: {note}")
        lines.append("")
    lines.append("| ESP | `EMAIL_BACKEND` | Required settings | Optional settings |")
    lines.append("| --- | --- | --- | --- |")
    for esp in esps:
        required = ", ".join(f"`{esp.settings_prefix}_{name}`" for name in esp.required_settings)
        optional = ", ".join(f"`{esp.settings_prefix}_{name}`" for name in esp.optional_settings)
        row = [esp.esp_name, f"`{esp.backend_path}`", required or "(none)", optional or "(none)"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Webhooks


@dataclass
class EspWebhooks:
    esp_name: str
    tracking_url: str | None
    inbound_url: str | None
    settings: tuple[str, ...]


def probe_webhooks(esp_key: str, esp_name: str) -> EspWebhooks:
    """The ESP's webhook URLs (from the URLconf) and the settings its views read."""
    from django.urls import NoReverseMatch, resolve, reverse

    urls: dict[str, str | None] = {}
    read: list[str] = []
    for kind in ("tracking", "inbound"):
        try:
            urls[kind] = reverse(f"{esp_key}_{kind}_webhook")
        except NoReverseMatch:
            urls[kind] = None
            continue
        view_class = resolve(urls[kind]).func.view_class
        for name in _settings_read_by(view_class):
            if name not in read:
                read.append(name)
    return EspWebhooks(esp_name, urls["tracking"], urls["inbound"], tuple(read))


def _settings_read_by(view_class: type) -> list[str]:
    """The ANYMAIL settings view_class reads when it's created (recorded, not guessed)."""
    import sys
    import warnings

    from . import utils

    seen: list[str] = []

    def recording(name, default=utils.UNSET, esp_name=None, kwargs=None, allow_bare=False):
        setting = f"{esp_name}_{name}".upper() if esp_name else name.upper()
        if setting not in seen:
            seen.append(setting)
        return utils.get_anymail_setting(name, default, esp_name, kwargs, allow_bare)

    modules = {
        sys.modules[cls.__module__] for cls in view_class.__mro__ if cls.__module__ in sys.modules
    }
    patched = [
        module
        for module in modules
        if getattr(module, "get_anymail_setting", None) is utils.get_anymail_setting
    ]
    for module in patched:
        module.get_anymail_setting = recording
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                view_class()
            except Exception:  # a required setting missing: what was read so far still counts
                pass
    finally:
        for module in patched:
            module.get_anymail_setting = utils.get_anymail_setting
    return seen


def webhooks_markdown(backend_paths: tuple[str, ...] = ESP_BACKENDS) -> str:
    """The webhook URLs and settings of every ESP, as Markdown."""
    lines = [
        "| ESP | Tracking webhook | Inbound webhook | Webhook settings |",
        "| --- | --- | --- | --- |",
    ]
    for backend_path in backend_paths:
        backend_class = import_string(backend_path)
        esp_name = backend_class.esp_name
        esp_key = esp_name.lower().replace(" ", "_")
        hooks = probe_webhooks(esp_key, esp_name)
        settings = ", ".join(f"`{name}`" for name in hooks.settings if name != "WEBHOOK_SECRET")
        row = [
            esp_name,
            f"`{hooks.tracking_url}`" if hooks.tracking_url else "(none)",
            f"`{hooks.inbound_url}`" if hooks.inbound_url else "(none)",
            settings or "`WEBHOOK_SECRET` only",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
