"""The audit log in sentences: one formatter per action, amounts in dollars and cents.

Services record what they did as (action, target, details) in every app's own words; this is
the one place that knows all of them, at the top of the layers. An action without a formatter
(a new one) still reads as a sentence, with money-looking details in dollars."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from billing.templatetags.money import cents, dollars
from organizations.models import AuditEvent
from organizations.roles import Role

Details = dict[str, Any]
Formatter = Callable[[str, Details], str]


def _role(value: Any) -> str:
    try:
        return str(Role(value).label)
    except ValueError:
        return str(value or "")


def _money(details: Details, key: str) -> str:
    value = details.get(key)
    if not isinstance(value, int):
        return ""
    if key.endswith("_microdollars"):
        return dollars(value)
    return cents(value)


def _invoice(details: Details) -> str:
    number = details.get("invoice") or ""
    return f" (invoice {number})" if number else ""


def _because(details: Details) -> str:
    reason = str(details.get("reason") or "").strip()
    return f": {reason}" if reason else ""


def _date(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{moment.day} {moment:%b %Y}"


def _pay_now(target: str, d: Details) -> str:
    paid = _money(d, "amount_paid")
    failure = str(d.get("failure") or "")
    if target and failure:
        return f"Paid {paid} with “Pay now” ({target}); then the card was declined: {failure}"
    if target:
        return f"Paid {paid} of overdue invoices with “Pay now” ({target})"
    return f"Tried “Pay now”; the card was declined: {failure}"


def _auto_topup(target: str, d: Details) -> str:
    if not d.get("enabled"):
        return "Turned auto top-up off"
    return (
        f"Turned auto top-up on: buy {_money(d, 'amount_cents')} when the balance falls under "
        f"{_money(d, 'threshold_microdollars')}"
    )


def _low_balance(target: str, d: Details) -> str:
    if d.get("threshold_microdollars") is None:
        return "Turned the low-balance alert off"
    recipients = ", ".join(d.get("recipients") or []) or "the billing contacts"
    return (
        f"Set the low-balance alert at {_money(d, 'threshold_microdollars')}, sent to {recipients}"
    )


def _daily_limit(target: str, d: Details) -> str:
    if d.get("limit_microdollars") is None:
        return "Removed the daily limit per member"
    return f"Set the daily limit per member to {_money(d, 'limit_microdollars')}"


def _grant(target: str, d: Details) -> str:
    return f"Granted {_money(d, 'amount_microdollars')} of credits{_because(d)}"


def _adjustment(target: str, d: Details) -> str:
    amount = d.get("amount_microdollars")
    verb = "Removed" if isinstance(amount, int) and amount < 0 else "Added"
    shown = dollars(abs(amount)) if isinstance(amount, int) else ""
    return f"{verb} {shown} of credits by adjustment{_because(d)}"


def _suspend(target: str, d: Details) -> str:
    return f"Suspended the organization{_because(d)}"


def _details_update(target: str, d: Details) -> str:
    fields = [str(name).replace("_", " ") for name in d.get("fields") or []]
    return "Updated the billing details" + (f" ({', '.join(fields)})" if fields else "")


FORMATTERS: dict[str, Formatter] = {
    # The team
    "organization.create": lambda t, d: f"Created the organization {t}",
    "organization.rename": lambda t, d: (
        f"Renamed the organization from “{d.get('old_name')}” to “{t}”"
    ),
    "organization.delete": lambda t, d: f"Deleted the organization{_because(d)}",
    "invitation.create": lambda t, d: f"Invited {t} as {_role(d.get('role'))}",
    "invitation.resend": lambda t, d: f"Sent {t} a new invitation link",
    "invitation.revoke": lambda t, d: f"Revoked the invitation for {t}",
    "invitation.accept": lambda t, d: (
        f"Accepted the invitation and joined as {_role(d.get('role'))}"
    ),
    "membership.change_role": lambda t, d: (
        f"Changed the role of {t} from {_role(d.get('old_role'))} to {_role(d.get('role'))}"
    ),
    "membership.remove": lambda t, d: f"Removed {t} ({_role(d.get('role'))}) from the organization",
    "membership.leave": lambda t, d: "Left the organization",
    "membership.seed": lambda t, d: f"Added {t} (demo data)",
    "usage.visibility": lambda t, d: (
        "Let members see the organization's usage totals"
        if d.get("members_see_totals")
        else "Hid the organization's usage totals from members"
    ),
    # Billing and the lifecycle
    "billing.details_update": _details_update,
    "billing.pay_now": _pay_now,
    "billing.grace_start": lambda t, d: f"Grace period started{_because(d)}",
    "billing.grace_extend": lambda t, d: f"Extended the grace period{_because(d)}",
    "billing.suspend": _suspend,
    "billing.restore": lambda t, d: f"The organization is active again{_because(d)}",
    "billing.purge": lambda t, d: f"The organization's data was deleted{_because(d)}",
    # Seats
    "seats.purchase": lambda t, d: f"Bought {t} for {_money(d, 'amount')}{_invoice(d)}",
    "seats.add": lambda t, d: (
        f"Added {t} for {_money(d, 'amount')}, {d.get('quantity')} seats in all{_invoice(d)}"
    ),
    "seats.renew": lambda t, d: (
        f"Renewed {d.get('quantity')} seats for {_money(d, 'amount')}{_invoice(d)}"
    ),
    "seats.remove": lambda t, d: (
        f"Removed {t}: {d.get('quantity_before')} → {d.get('quantity')} seats"
    ),
    "seats.cancel": lambda t, d: (
        f"Cancelled the seat subscription; the seats end on {_date(d.get('period_end'))}"
    ),
    "seats.resume": lambda t, d: f"Resumed the seat subscription ({t})",
    "seats.end": lambda t, d: "The seat subscription ended",
    "seats.purchase_failed": lambda t, d: f"Could not buy {t}{_because(d)}",
    "seats.add_failed": lambda t, d: f"Could not add {t}{_because(d)}",
    "seats.remove_failed": lambda t, d: f"Could not remove {t}{_because(d)}",
    # Credits
    "credits.grant": _grant,
    "credits.adjustment": _adjustment,
    "credits.checkout": lambda t, d: (
        f"Started a credit purchase of {_money(d, 'amount_cents')} at Checkout"
    ),
    "credits.member_daily_limit": _daily_limit,
    "credit_purchase.paid": lambda t, d: f"Bought {_money(d, 'amount_cents')} of credits",
    "credit_purchase.failed": lambda t, d: (
        f"A credit purchase of {_money(d, 'amount_cents')} failed{_because(d)}"
    ),
    "credit_purchase.expired": lambda t, d: (
        f"A credit purchase of {_money(d, 'amount_cents')} was not completed{_because(d)}"
    ),
    "credit_purchase.processing": lambda t, d: (
        f"A credit purchase of {_money(d, 'amount_cents')} was paid by bank debit, waiting for "
        "the bank"
    ),
    "auto_topup.paid": lambda t, d: f"Auto top-up bought {_money(d, 'amount_cents')} of credits",
    "auto_topup.failed": lambda t, d: (
        f"Auto top-up of {_money(d, 'amount_cents')} failed{_because(d)}"
    ),
    "auto_topup.disabled": lambda t, d: f"Auto top-up turned itself off{_because(d)}",
    "auto_topup.configure": _auto_topup,
    "low_balance_alert.configure": _low_balance,
}

# Keys of details whose value is money, and in which unit.
_MONEY_SUFFIXES = ("_cents", "_microdollars")
_QUIET = {"from_state", "to_state", "invoice", "subscription"}


def _fallback(action: str, target: str, details: Details) -> str:
    """An action nobody wrote a sentence for yet: its name in words, the target, and the
    details with money in dollars."""
    words = action.replace(".", " ").replace("_", " ").strip().capitalize()
    parts = []
    for key, value in details.items():
        if key in _QUIET or value in (None, "", [], {}):
            continue
        label = key
        for suffix in _MONEY_SUFFIXES:
            label = label.removesuffix(suffix)
        shown = _money(details, key) if key.endswith(_MONEY_SUFFIXES) else value
        parts.append(f"{label.replace('_', ' ')} {shown}")
    sentence = f"{words}: {target}" if target else words
    return sentence + (f" ({'; '.join(parts)})" if parts else "")


def describe(event: AuditEvent) -> str:
    """One audit event as a sentence, e.g. "Bought $250.00 of credits"."""
    details = event.details if isinstance(event.details, dict) else {}
    formatter = FORMATTERS.get(event.action)
    if formatter is None:
        return _fallback(event.action, event.target, details)
    try:
        return formatter(event.target, details)
    except (KeyError, TypeError, ValueError):
        # Details written by an older version of a service: never a broken page.
        return _fallback(event.action, event.target, details)
