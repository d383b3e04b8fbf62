"""The permission matrix of DESIGN.md, written down once. Views ask `allows`; pages show MATRIX."""

from enum import StrEnum

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    BILLING_MANAGER = "billing_manager", "Billing manager"
    MEMBER = "member", "Member"


class Permission(StrEnum):
    VIEW_ORGANIZATION = "view_organization"
    SPEND_CREDITS = "spend_credits"
    VIEW_ALL_USAGE = "view_all_usage"
    MANAGE_CREDITS = "manage_credits"
    MANAGE_SEATS = "manage_seats"
    MANAGE_BILLING = "manage_billing"
    INVITE_MEMBERS = "invite_members"
    MANAGE_TEAM = "manage_team"
    MANAGE_OWNERS = "manage_owners"
    MANAGE_SETTINGS = "manage_settings"


OWNER, ADMIN, BILLING, MEMBER = Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER, Role.MEMBER

# (permission, what it covers, roles that have it). Anything not granted here is refused (403).
MATRIX: tuple[tuple[Permission, str, frozenset[Role]], ...] = (
    (
        Permission.VIEW_ORGANIZATION,
        "See the organization's overview and team, own usage, own tokens",
        frozenset({OWNER, ADMIN, BILLING, MEMBER}),
    ),
    (
        Permission.SPEND_CREDITS,
        "Spend organization credits (API); needs a seat",
        frozenset({OWNER, ADMIN, MEMBER}),
    ),
    (
        Permission.VIEW_ALL_USAGE,
        "See everyone's usage and the usage CSV (members only if the organization allows)",
        frozenset({OWNER, ADMIN, BILLING}),
    ),
    (
        Permission.MANAGE_CREDITS,
        "Buy credits, auto top-up, low-balance alerts",
        frozenset({OWNER, ADMIN, BILLING}),
    ),
    (
        Permission.MANAGE_SEATS,
        "Seats: buy, add, remove, cancel, resume",
        frozenset({OWNER, ADMIN, BILLING}),
    ),
    (
        Permission.MANAGE_BILLING,
        "Invoices, billing details, payment method, pay now",
        frozenset({OWNER, ADMIN, BILLING}),
    ),
    (Permission.INVITE_MEMBERS, "Invite members", frozenset({OWNER, ADMIN, BILLING})),
    (
        Permission.MANAGE_TEAM,
        "Invite admins and billing managers; remove members; change roles (not of owners)",
        frozenset({OWNER, ADMIN}),
    ),
    (
        Permission.MANAGE_OWNERS,
        "Invite, remove or change owners; delete the organization",
        frozenset({OWNER}),
    ),
    (
        Permission.MANAGE_SETTINGS,
        # Each setting named with the tab where it lives (the Settings tab links to the others).
        "Rename the organization (Settings); member daily limits (Credits); monthly budgets "
        "(Members); what members see of usage (Usage); the audit log",
        frozenset({OWNER, ADMIN}),
    ),
)

_GRANTS: dict[Permission, frozenset[Role]] = {permission: roles for permission, _, roles in MATRIX}


def allows(role: str, permission: Permission) -> bool:
    return role in _GRANTS[permission]


def permission_to_invite(role: str) -> Permission:
    """What it takes to invite someone as `role` (or to resend or revoke that invitation)."""
    if role == Role.OWNER:
        return Permission.MANAGE_OWNERS
    if role == Role.MEMBER:
        return Permission.INVITE_MEMBERS
    return Permission.MANAGE_TEAM


def permission_to_manage(role: str) -> Permission:
    """What it takes to remove someone holding `role`, or to change their role."""
    return Permission.MANAGE_OWNERS if role == Role.OWNER else Permission.MANAGE_TEAM


def invitable_roles(role: str) -> list[Role]:
    return [r for r in Role if allows(role, permission_to_invite(r))]


def assignable_roles(role: str) -> list[Role]:
    return [r for r in Role if allows(role, permission_to_manage(r))]
