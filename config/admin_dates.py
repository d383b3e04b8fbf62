"""The admin's date drill-down (`date_hierarchy`) with an impossible year.

Django 5.2 turns `?created__year=9999` (no next year) or a year of twenty digits into an uncaught
ValueError or OverflowError, a 500, where a bad month or day gets the admin's "?e=1" page. Django
fixed it upstream (ticket #37357); until that release this guard sends such requests to the same
"?e=1" page. Years 1 to 9998 are left to Django, which handles them."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

LATEST_YEAR = 9998  # the last year whose next day, month and year all exist


class AdminDateHierarchyGuard:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/admin/") and _impossible_year(request):
            return HttpResponseRedirect(f"{request.path}?e=1")
        return self.get_response(request)


def _impossible_year(request: HttpRequest) -> bool:
    for name, values in request.GET.lists():
        if name.endswith("__year"):
            for value in values:
                year = value.strip()
                if not (len(year) <= 4 and year.isascii() and year.isdigit()):
                    return True
                if not 1 <= int(year) <= LATEST_YEAR:
                    return True
    return False
