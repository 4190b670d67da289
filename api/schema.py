"""Describe API key authentication in the OpenAPI schema (the docs page's "Authorize" button)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                'An API key from the admin: "Authorization: Bearer mh_<prefix>_<secret>".'
            ),
        }
