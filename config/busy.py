"""A change that had to wait too long for another one (a row lock past its bounded wait,
organizations.locks) answers 503 "busy, try again" with Retry-After, never a 500. Views that can
say more (a form's message) catch the domain error first; this is what is left."""

from collections.abc import Callable

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from organizations.exceptions import RowBusy
from organizations.locks import lock_not_available
from seats.exceptions import SeatChangeBusy

RETRY_AFTER_SECONDS = 5


class BusyAnswer:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RowBusy | SeatChangeBusy):
            message = exception.message
        elif isinstance(exception, OperationalError) and lock_not_available(exception):
            message = "Someone else is changing this right now; nothing was changed."
        else:
            return None
        response = render(request, "busy.html", {"message": message}, status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
