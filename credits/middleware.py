from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from credits.api import MAX_BODY_BYTES


class ApiBodyLimit:
    """Refuse API bodies over 64 KB before anything parses them."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > MAX_BODY_BYTES:
                return JsonResponse(
                    {
                        "error": "payload_too_large",
                        "field": "body",
                        "message": "The request body is over 64 KB.",
                    },
                    status=400,
                )
        return self.get_response(request)
