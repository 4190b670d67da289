"""The JSON status API: thin viewsets over the selectors (reads) and services (writes)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, JsonResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from sending.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
from sending.models import Message
from sending.services import message_resend, suppression_add, suppression_remove

from . import selectors
from .filters import EventFilter, MessageFilter, RecipientFilter, SuppressionFilter
from .serializers import (
    ErrorSerializer,
    EventDetailSerializer,
    EventSerializer,
    MessageDetailSerializer,
    MessageSerializer,
    RecipientSerializer,
    ResendErrorSerializer,
    ResendSerializer,
    SuppressionCreateSerializer,
    SuppressionSerializer,
)

#: Ids in URLs: digits that fit a 64-bit column (anything else is a 404 before any query).
ID_PATTERN = r"[0-9]{1,18}"


def acting_user(request: Request) -> Any:
    """Who acts through the API: the user who created the key (None if deleted)."""
    return request.user if request.user.is_authenticated else None


class NewestFirstPagination(CursorPagination):
    """Stable pages however many rows arrive meanwhile; ?page_size= up to 200."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_ordering(self, request: Request, queryset: QuerySet, view: Any = None) -> tuple:
        # A filter may order by what its index holds (selectors.messages_for_recipient).
        return tuple(queryset.query.order_by) or super().get_ordering(request, queryset, view)

    def paginate_queryset(
        self, queryset: QuerySet, request: Request, view: Any = None
    ) -> list | None:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, DjangoValidationError):
            if getattr(self, "cursor", None) is None:
                raise
            # A position that doesn't fit the ordering: a cursor tampered with,
            # or one from another ordering (messages?recipient= pages by id).
            raise NotFound(self.invalid_cursor_message) from None


class NewestIdFirstPagination(NewestFirstPagination):
    ordering = ("-id",)


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Malformed filter or body"),
    401: OpenApiResponse(ErrorSerializer, description="Missing, unknown or revoked API key"),
    403: OpenApiResponse(ErrorSerializer, description="The API key lacks the scope"),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="No such id")}


class ApiViewSet(viewsets.GenericViewSet):
    lookup_value_regex = ID_PATTERN
    pagination_class = NewestFirstPagination


@extend_schema_view(
    list=extend_schema(summary="Find messages", responses={200: MessageSerializer, **ERRORS}),
    retrieve=extend_schema(
        summary="A message with its recipients, attachments and event timeline",
        responses={200: MessageDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class MessageViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = selectors.message_list()
    filterset_class = MessageFilter

    def get_queryset(self) -> Any:
        if self.action == "retrieve":
            return selectors.message_detail()
        if self.action == "resend":
            return Message.objects.all()  # the whole message, to rebuild it
        return super().get_queryset()

    def get_serializer_class(self) -> Any:
        if self.action == "retrieve":
            return MessageDetailSerializer
        if self.action == "resend":
            return ResendSerializer
        return MessageSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        serializer = self.get_serializer(selectors.with_recipients(page), many=True)
        return self.get_paginated_response(serializer.data)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        message = selectors.with_timeline(self.get_object())
        return Response(self.get_serializer(message).data)

    @extend_schema(
        summary="Send a stored message again (suppressions still apply)",
        request=ResendSerializer,
        responses={
            201: OpenApiResponse(MessageSerializer, description="Resent: the new message"),
            **ERRORS,
            **NOT_FOUND,
            409: OpenApiResponse(
                ResendErrorSerializer,
                description="Not sent: its content wasn't kept, or no recipient was accepted "
                "(suppressed, invalid or rejected; the new record says which)",
            ),
            502: OpenApiResponse(
                ResendErrorSerializer, description="The ESP failed; the new record has the error"
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def resend(self, request: Request, pk: str | None = None) -> Response:
        original = self.get_object()
        serializer = ResendSerializer(data=request.data, context={"message": original})
        serializer.is_valid(raise_exception=True)
        backend = serializer.validated_data.get("backend") or original.backend
        try:
            new = message_resend(
                record=original, backend_path=backend, requested_by=acting_user(request)
            )
        except AnymailRecipientsRefused as error:
            return self._resend_error(status.HTTP_409_CONFLICT, error)
        except AnymailAPIError as error:
            return self._resend_error(status.HTTP_502_BAD_GATEWAY, error)
        except (AnymailError, ImproperlyConfigured, ImportError) as error:
            # The chosen backend can't send this message (an unsupported
            # feature, missing settings): nothing was sent.
            return self._resend_error(
                status.HTTP_400_BAD_REQUEST, error, f"Can't resend through {backend}: {error}"
            )
        except ValueError as error:  # content not kept, or the send was cancelled
            return self._resend_error(status.HTTP_409_CONFLICT, error)
        return Response(
            MessageSerializer(selectors.message_row(message_id=new.pk)).data,
            status=status.HTTP_201_CREATED,
        )

    def _resend_error(self, code: int, error: Exception, detail: str | None = None) -> Response:
        body: dict[str, Any] = {"detail": detail or str(error)}
        record_id = getattr(error, "mailhub_record_id", None)
        if record_id is not None:
            body["message"] = MessageSerializer(selectors.message_row(message_id=record_id)).data
        return Response(body, status=code)


@extend_schema_view(
    list=extend_schema(summary="Find recipients", responses={200: RecipientSerializer, **ERRORS}),
    retrieve=extend_schema(responses={200: RecipientSerializer, **ERRORS, **NOT_FOUND}),
)
class RecipientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = selectors.recipient_list()
    serializer_class = RecipientSerializer
    filterset_class = RecipientFilter
    # Recipients have no timestamp of their own; ids grow with their messages'.
    pagination_class = NewestIdFirstPagination


@extend_schema_view(
    list=extend_schema(summary="Find tracking events", responses={200: EventSerializer, **ERRORS}),
    retrieve=extend_schema(
        summary="An event, with the ESP's raw payload",
        responses={200: EventDetailSerializer, **ERRORS, **NOT_FOUND},
    ),
)
class EventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = selectors.event_list()
    filterset_class = EventFilter
    # Newest recorded first by id: events are the biggest table, and created_at
    # has no index (ids grow in the order events are recorded).
    pagination_class = NewestIdFirstPagination

    def get_serializer_class(self) -> Any:
        return EventDetailSerializer if self.action == "retrieve" else EventSerializer


@extend_schema_view(
    list=extend_schema(
        summary="Find suppressions", responses={200: SuppressionSerializer, **ERRORS}
    ),
    retrieve=extend_schema(responses={200: SuppressionSerializer, **ERRORS, **NOT_FOUND}),
    create=extend_schema(
        summary="Suppress an address (updates an existing suppression)",
        request=SuppressionCreateSerializer,
        responses={201: SuppressionSerializer, **ERRORS},
    ),
    destroy=extend_schema(
        summary="Stop suppressing an address (for this suppression's ESP scope)",
        responses={204: None, **ERRORS, **NOT_FOUND},
    ),
)
class SuppressionViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    queryset = selectors.suppression_list()
    filterset_class = SuppressionFilter

    def get_serializer_class(self) -> Any:
        return SuppressionCreateSerializer if self.action == "create" else SuppressionSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = SuppressionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            suppression = suppression_add(
                **serializer.validated_data, created_by=acting_user(request)
            )
        except ValueError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(SuppressionSerializer(suppression).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Any) -> None:
        suppression_remove(address=instance.address, esp=instance.esp)


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any other URL under /api/: a JSON 404, like every other API error."""
    return JsonResponse({"detail": "Not found."}, status=404)
