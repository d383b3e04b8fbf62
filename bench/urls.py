"""The project's URLs plus `POST /bench/ping`: the cheapest JSON answer the same server setup
gives, through the same middleware, as the yardstick for `POST /api/usage`."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/ping", ping, name="bench_ping"), *project_urlpatterns]
