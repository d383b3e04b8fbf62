"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256>` over
"<t>.<payload>". Verification uses the official library; signing is for the sandbox and tests."""

import hashlib
import hmac
import time

import stripe

TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    pass


def signature_header(payload: bytes, *, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(payload: bytes, *, header: str, secret: str) -> None:
    """Raise SignatureError unless the header signs this payload within the tolerance."""
    if not header or not secret:
        raise SignatureError("missing signature")
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), header, secret, tolerance=TOLERANCE_SECONDS
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
        raise SignatureError(str(error)) from None
