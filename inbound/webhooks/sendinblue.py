"""SendinBlue: the former name of Brevo, kept so existing inbound webhook URLs keep working.

``anymail/sendinblue/inbound/`` is the Brevo inbound webhook storing mail
under the "sendinblue" ESP and reading ``SENDINBLUE_*`` settings
(``SENDINBLUE_API_KEY`` to download attachments,
``SENDINBLUE_WEBHOOK_BEARER_TOKEN``). Creating it warns: change the inbound
webhook's URL to ``anymail/brevo/inbound/`` with Brevo's webhooks API (there
is no dashboard page for inbound webhooks).
"""

from __future__ import annotations

import warnings
from typing import Any

from sending.exceptions import AnymailDeprecationWarning

from .brevo import BrevoInboundWebhookView


class SendinBlueInboundWebhookView(BrevoInboundWebhookView):
    """Deprecated alias of the Brevo inbound webhook."""

    esp_name = "SendinBlue"

    def __init__(self, **kwargs: Any) -> None:
        warnings.warn(
            "The anymail/sendinblue/inbound/ webhook URL is deprecated: SendinBlue is now "
            "Brevo. Change your Brevo inbound webhook's URL to anymail/brevo/inbound/ "
            "(with Brevo's webhooks API) and rename your SENDINBLUE_* settings to BREVO_*.",
            AnymailDeprecationWarning,
            stacklevel=2,
        )
        super().__init__(**kwargs)
