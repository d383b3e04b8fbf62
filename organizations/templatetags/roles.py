from django import template

from organizations.models import Membership
from organizations.roles import Permission, allows

register = template.Library()


@register.filter
def can(membership: Membership | None, permission: str) -> bool:
    """{% if membership|can:"manage_credits" %}: the matrix, for what a page shows."""
    return membership is not None and allows(membership.role, Permission(permission))
