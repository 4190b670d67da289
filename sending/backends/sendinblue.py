"""SendinBlue: the former name of Brevo, kept so existing settings keep working.

``sending.backends.sendinblue.EmailBackend`` is the Brevo backend reading
``SENDINBLUE_*`` settings (``SENDINBLUE_API_KEY``, ``SENDINBLUE_API_URL``)
and recording sends under the "sendinblue" ESP. Creating it warns: switch
``EMAIL_BACKEND`` to ``sending.backends.brevo.EmailBackend`` and rename the
settings to ``BREVO_*``.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..exceptions import AnymailDeprecationWarning
from .brevo import BrevoPayload
from .brevo import EmailBackend as BrevoEmailBackend

SendinBluePayload = BrevoPayload


class EmailBackend(BrevoEmailBackend):
    """Deprecated alias of the Brevo backend, configured by SENDINBLUE_* settings."""

    esp_name = "SendinBlue"

    def __init__(self, **kwargs: Any) -> None:
        warnings.warn(
            "sending.backends.sendinblue is deprecated: SendinBlue is now Brevo. "
            "Set EMAIL_BACKEND to 'sending.backends.brevo.EmailBackend' and rename "
            "your SENDINBLUE_* settings to BREVO_* (SENDINBLUE_API_KEY becomes BREVO_API_KEY).",
            AnymailDeprecationWarning,
            stacklevel=2,
        )
        super().__init__(**kwargs)
