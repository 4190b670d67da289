"""Base for backends that call an ESP's HTTP API with requests."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urljoin

import requests
from django.core.mail.message import EmailMessage

from ..exceptions import AnymailRequestsAPIError
from ..utils import get_anymail_setting, redact_headers
from .base import AnymailBaseBackend, BasePayload

DEFAULT_REQUESTS_TIMEOUT = 30  # seconds, as documented for REQUESTS_TIMEOUT
USER_AGENT = "mailhub (Django email backend)"


class AnymailRequestsBackend(AnymailBaseBackend):
    """Base for requests-based backends: one Session per send_messages() call."""

    def __init__(self, api_url: str, **kwargs: Any) -> None:
        self.api_url = api_url
        self.timeout = get_anymail_setting(
            "requests_timeout", kwargs=kwargs, default=DEFAULT_REQUESTS_TIMEOUT
        )
        super().__init__(**kwargs)
        self.session: requests.Session | None = None

    def open(self) -> bool:
        if self.session:
            return False  # already open
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        return True

    def close(self) -> None:
        if self.session is None:
            return
        try:
            self.session.close()
        finally:
            self.session = None

    def post_to_esp(self, payload: BasePayload, message: EmailMessage) -> requests.Response:
        """POST payload's request to the ESP and return the response.

        Connection errors and timeouts become AnymailRequestsAPIError (chained
        to the requests error); so do non-2xx responses, whose text says what
        the ESP said.
        """
        params = payload.get_request_params(self.api_url)
        params.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(**params)
        except requests.RequestException as err:
            # Error text says where we tried to connect, but never the credentials
            raise AnymailRequestsAPIError(
                f"Error posting to {params.get('url', '?')}:",
                email_message=message,
                payload=payload,
                backend=self,
            ) from err
        if self.debug_api_requests:
            self._dump_api_request(response)
        self.raise_for_status(response, payload, message)
        return response

    def raise_for_status(
        self, response: requests.Response, payload: BasePayload, message: EmailMessage
    ) -> None:
        """Raise AnymailRequestsAPIError for a non-2xx response."""
        if not 200 <= response.status_code <= 299:
            raise AnymailRequestsAPIError(
                email_message=message, payload=payload, response=response, backend=self
            )

    def deserialize_json_response(
        self, response: requests.Response, payload: BasePayload, message: EmailMessage
    ) -> Any:
        """Return the response's JSON, or raise AnymailRequestsAPIError if it has none."""
        try:
            return response.json()
        except ValueError as err:
            raise AnymailRequestsAPIError(
                f"Invalid JSON in {self.esp_name} API response",
                email_message=message,
                payload=payload,
                response=response,
                backend=self,
            ) from err

    @staticmethod
    def _dump_api_request(response: requests.Response) -> None:
        """Print the API request and response, credentials redacted (DEBUG_API_REQUESTS)."""
        request = response.request
        print(f"\n===== mailhub API request =====\n{request.method} {request.url}", file=sys.stdout)
        for name, value in redact_headers(request.headers).items():
            print(f"{name}: {value}")
        if request.body is not None:
            body = request.body
            if isinstance(body, bytes):
                body = body.decode("utf-8", errors="replace")
            print(f"\n{body}")
        print(f"----- response -----\nHTTP {response.status_code} {response.reason}")
        for name, value in redact_headers(response.headers).items():
            print(f"{name}: {value}")
        print(f"\n{response.text}\n")


class RequestsPayload(BasePayload):
    """Payload for a requests-based backend: builds the kwargs for Session.request."""

    def __init__(
        self,
        message: EmailMessage,
        defaults: dict,
        backend: AnymailRequestsBackend,
        suppressed: set[str] = frozenset(),
        method: str = "POST",
        params: dict | None = None,
        data: Any = None,
        headers: dict | None = None,
        files: Any = None,
        auth: Any = None,
    ) -> None:
        self.method = method
        self.params = params
        self.data = data
        self.headers = headers if headers is not None else {}
        self.files = files
        self.auth = auth
        super().__init__(message, defaults, backend, suppressed)

    def get_request_params(self, api_url: str) -> dict[str, Any]:
        """Return the kwargs for requests.Session.request()."""
        return {
            "method": self.method,
            "url": self.get_api_endpoint_url(api_url),
            "params": self.params,
            "data": self.serialize_data(),
            "headers": self.headers,
            "files": self.files,
            "auth": self.auth,
        }

    def get_api_endpoint(self) -> str:
        """Return the path (relative to the API URL) to post to."""
        raise NotImplementedError(f"{self.__class__.__name__} must implement get_api_endpoint")

    def get_api_endpoint_url(self, api_url: str) -> str:
        return urljoin(api_url, self.get_api_endpoint())

    def serialize_data(self) -> Any:
        """Return self.data as the request body (JSON-encode it, for a JSON API)."""
        return self.data
