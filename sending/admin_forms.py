"""Forms for the sending admin's actions: resend, suppressions, forget."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .models import Suppression, SuppressionReason
from .selectors import backend_label, known_esps, resend_backend_paths
from .utils import get_mailhub_setting, normalize_address

#: Most addresses one forget request handles (each is a transaction of its own).
FORGET_MAX_ADDRESSES = 20


def _address(value: str) -> str:
    normalized = normalize_address(value or "")
    try:
        validate_email(normalized)
    except ValidationError:
        raise ValidationError(f"Not an email address: {value!r}") from None
    return normalized


def _esp_choices() -> list[tuple[str, str]]:
    return [("", "All ESPs"), *[(key, key) for key in known_esps()]]


class ResendForm(forms.Form):
    ids = forms.CharField(widget=forms.HiddenInput)
    backend = forms.ChoiceField(
        required=False,
        label="Send through",
        help_text="Suppressions apply to the backend's ESP: the preview shows who is skipped.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["backend"].choices = [
            ("", "Each message's own backend"),
            *[(path, backend_label(path)) for path in resend_backend_paths()],
        ]


class SuppressionAddForm(forms.ModelForm):
    """Adding an address already suppressed for the same ESP updates that suppression."""

    esp = forms.ChoiceField(required=False, label="ESP", choices=_esp_choices)

    class Meta:
        model = Suppression
        fields = ("address", "esp", "reason", "expires_at", "note")

    def clean_address(self) -> str:
        return _address(self.cleaned_data["address"])

    def clean(self) -> dict:
        cleaned = super().clean()
        address, esp = cleaned.get("address"), cleaned.get("esp") or ""
        if address and self.instance.pk is None:
            # suppression_add updates the existing (address, ESP) suppression.
            existing = Suppression.objects.filter(address=address, esp=esp).first()
            if existing is not None:
                self.instance = existing
        return cleaned


class SuppressionImportForm(forms.Form):
    file = forms.FileField(label="CSV file")
    dry_run = forms.BooleanField(
        required=False, label="Check only", help_text="Report what would change; change nothing."
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = int(get_mailhub_setting("SUPPRESSION_IMPORT_MAX_BYTES", 5 * 1024 * 1024))
        if upload.size > limit:
            raise ValidationError(
                f"The file is {upload.size:,} bytes; the most an import takes is {limit:,} "
                "bytes. Split it, or use `manage.py suppressions import`."
            )
        raw = upload.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise ValidationError(
                f"The file isn't UTF-8 text (byte {error.start + 1} is not valid UTF-8)."
            ) from None
        if "\x00" in text:
            raise ValidationError("The file isn't CSV text (it contains NUL bytes).")
        return text


class ForgetForm(forms.Form):
    address = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text=f"One address per line (at most {FORGET_MAX_ADDRESSES}).",
    )
    keep_suppression = forms.BooleanField(
        required=False,
        initial=True,
        label="Keep their suppressions",
        help_text="So they are still never mailed; untick to delete the suppressions too.",
    )

    def __init__(self, data=None, *args, **kwargs):
        if data is not None and len(data.getlist("address")) > 1:
            # Several hidden address fields (from the recipient action): one per line.
            data = data.copy()
            data.setlist("address", ["\n".join(data.getlist("address"))])
        super().__init__(data, *args, **kwargs)

    def clean_address(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data["address"].splitlines()]
        addresses = list(dict.fromkeys(_address(line) for line in lines if line))
        if not addresses:
            raise ValidationError("Enter an address.")
        if len(addresses) > FORGET_MAX_ADDRESSES:
            raise ValidationError(
                f"At most {FORGET_MAX_ADDRESSES} addresses at a time "
                "(or use `manage.py forget_recipient`)."
            )
        return addresses


__all__ = [
    "FORGET_MAX_ADDRESSES",
    "ForgetForm",
    "ResendForm",
    "SuppressionAddForm",
    "SuppressionImportForm",
    "SuppressionReason",
]
