from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from payments import tasks
from payments.dispatch import BadEvent, webhook_event_record
from payments.queue import enqueue_after_commit
from payments.signing import SignatureError

MAX_WEBHOOK_BYTES = 1024 * 1024


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify, store once, answer 200; processing happens in a task after commit."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_WEBHOOK_BYTES or len(request.body) > MAX_WEBHOOK_BYTES:
        return JsonResponse({"error": "payload_too_large"}, status=413)
    try:
        event, created = webhook_event_record(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except SignatureError:
        return JsonResponse({"error": "invalid_signature"}, status=400)
    except BadEvent as bad:
        # Signed, but not an event we can take: 400 (Stripe shows it and retries); stored as
        # failed with this reason when its id could be read.
        return JsonResponse({"error": "invalid_payload", "reason": bad.reason}, status=400)
    if created:
        enqueue_after_commit(tasks.webhook_event_process, event.pk)
    return JsonResponse({"received": True, "duplicate": not created})
