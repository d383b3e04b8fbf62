"""Emails about money, sent once the transaction that decided them commits."""

from typing import Any

from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from billing.selectors import billing_contacts
from organizations.models import Organization


def email_after_commit(
    *, recipients: list[str], subject: str, template: str, context: dict[str, Any]
) -> None:
    """Render now, send once the transaction commits (never for work that rolled back)."""
    if not recipients:
        return
    body = render_to_string(template, context)
    transaction.on_commit(
        lambda: send_mail(subject=subject, message=body, from_email=None, recipient_list=recipients)
    )


def email_billing_contacts(
    *, organization: Organization, subject: str, template: str, context: dict[str, Any]
) -> None:
    email_after_commit(
        recipients=billing_contacts(organization),
        subject=subject,
        template=template,
        context={"organization": organization, **context},
    )
