"""SendinBlue: the former name of Brevo, kept so existing webhook URLs keep working.

``anymail/sendinblue/tracking/`` is the Brevo tracking webhook recording
events under the "sendinblue" ESP (matching sends made with
``sending.backends.sendinblue``) and reading ``SENDINBLUE_*`` settings.
Creating it warns: change the webhook URL in Brevo to
``anymail/brevo/tracking/`` (and send with the Brevo backend, so the
recorded ESPs still match).
"""

from __future__ import annotations

import warnings
from typing import Any

from sending.exceptions import AnymailDeprecationWarning

from .brevo import BrevoTrackingWebhookView


class SendinBlueTrackingWebhookView(BrevoTrackingWebhookView):
    """Deprecated alias of the Brevo tracking webhook."""

    esp_name = "SendinBlue"

    def __init__(self, **kwargs: Any) -> None:
        warnings.warn(
            "The anymail/sendinblue/tracking/ webhook URL is deprecated: SendinBlue is now "
            "Brevo. Change your Brevo transactional webhook URL to anymail/brevo/tracking/ "
            "(together with EMAIL_BACKEND 'sending.backends.brevo.EmailBackend', so events "
            "and sends are recorded under the same ESP).",
            AnymailDeprecationWarning,
            stacklevel=2,
        )
        super().__init__(**kwargs)
