"""Every write to organizations, memberships and invitations; each writes an audit event."""

import hashlib
import secrets
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from organizations.exceptions import InvitationUnusable, SeatRequired, TeamRuleError
from organizations.models import AuditEvent, Invitation, Membership, Organization
from organizations.roles import Role, allows, permission_to_invite, permission_to_manage
from organizations.rules import team_rules_check
from organizations.selectors import is_last_owner


def audit_record(
    *,
    organization: Organization | None,
    actor: User | None,
    action: str,
    target: str = "",
    **details: Any,
) -> AuditEvent:
    return AuditEvent.objects.create(
        organization=organization, actor=actor, action=action, target=target, details=details
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def organization_create(*, actor: User, name: str) -> Organization:
    """The creator becomes its first owner and switches to it."""
    organization = Organization.objects.create(name=name)
    Membership.objects.create(organization=organization, user=actor, role=Role.OWNER)
    audit_record(organization=organization, actor=actor, action="organization.create", target=name)
    profile_select(user=actor, organization=organization)
    return organization


@transaction.atomic
def organization_rename(*, actor: User, organization: Organization, name: str) -> Organization:
    old_name = organization.name
    organization.name = name
    organization.save(update_fields=["name"])
    audit_record(
        organization=organization,
        actor=actor,
        action="organization.rename",
        target=name,
        old_name=old_name,
    )
    return organization


def organization_team_remove(*, organization: Organization) -> dict[str, int]:
    """Closing an organization (`dunning.closing`): the team and its invitations go; the
    organization row stays as a tombstone and its audit trail stays with it."""
    memberships, _ = Membership.objects.filter(organization=organization).delete()
    invitations, _ = Invitation.objects.filter(organization=organization).delete()
    User.objects.filter(active_organization=organization).update(active_organization=None)
    return {"memberships": memberships, "invitations": invitations}


def _send_invitation(invitation: Invitation, token: str) -> None:
    link = settings.SITE_URL + reverse("invitation_accept", args=[token])
    context = {"invitation": invitation, "link": link}
    transaction.on_commit(
        lambda: send_mail(
            subject=f"You are invited to {invitation.organization.name} on Kilo Billing",
            message=render_to_string("emails/invitation.txt", context),
            from_email=None,
            recipient_list=[invitation.email],
        )
    )


def _new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


@transaction.atomic
def invitation_create(*, actor: User, membership: Membership, email: str, role: str) -> Invitation:
    """Invite `email` as `role`, if the inviter's role may; one open invitation per email."""
    organization = membership.organization
    if not allows(membership.role, permission_to_invite(role)):
        raise PermissionDenied
    email = email.strip().lower()
    if Membership.objects.filter(organization=organization, user__email__iexact=email).exists():
        raise TeamRuleError(f"{email} is already a member of {organization.name}.")
    token, token_hash = _new_token()
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(
                organization=organization,
                email=email,
                role=role,
                token_hash=token_hash,
                invited_by=actor,
                expires_at=timezone.now() + settings.INVITATION_VALID_FOR,
            )
    except IntegrityError:
        raise TeamRuleError(
            f"{email} already has an open invitation; resend or revoke it below."
        ) from None
    # An open invitation for an owner, admin or member holds a seat from now on (checked after
    # the insert, so that a duplicate is reported as such; a refusal rolls the insert back).
    team_rules_check(organization_id=organization.pk, role=role, invitation_id=invitation.pk)
    audit_record(
        organization=organization, actor=actor, action="invitation.create", target=email, role=role
    )
    _send_invitation(invitation, token)
    return invitation


@transaction.atomic
def invitation_resend(*, actor: User, membership: Membership, invitation: Invitation) -> None:
    """A new link with a fresh 7 days; the old link stops working."""
    if not allows(membership.role, permission_to_invite(invitation.role)):
        raise PermissionDenied
    if invitation.accepted_at or invitation.revoked_at:
        raise TeamRuleError("This invitation was already accepted or revoked.")
    if invitation.status == Invitation.Status.EXPIRED:
        # An expired invitation held no seat; resending makes it hold one again.
        team_rules_check(organization_id=invitation.organization_id, role=invitation.role)
    token, invitation.token_hash = _new_token()
    invitation.expires_at = timezone.now() + settings.INVITATION_VALID_FOR
    invitation.save(update_fields=["token_hash", "expires_at"])
    audit_record(
        organization=invitation.organization,
        actor=actor,
        action="invitation.resend",
        target=invitation.email,
    )
    _send_invitation(invitation, token)


@transaction.atomic
def invitation_revoke(*, actor: User, membership: Membership, invitation: Invitation) -> None:
    if not allows(membership.role, permission_to_invite(invitation.role)):
        raise PermissionDenied
    claimed = Invitation.objects.open().filter(pk=invitation.pk).update(revoked_at=timezone.now())
    if not claimed:
        raise TeamRuleError("This invitation was already accepted or revoked.")
    audit_record(
        organization=invitation.organization,
        actor=actor,
        action="invitation.revoke",
        target=invitation.email,
    )


def invitation_for_token(token: str) -> Invitation:
    """The invitation behind a link, or InvitationUnusable saying why it cannot be used."""
    invitation = (
        Invitation.objects.select_related("organization")
        .filter(token_hash=hash_token(token))
        .first()
    )
    if invitation is None:
        raise InvitationUnusable("not_found")
    if invitation.status != Invitation.Status.PENDING:
        raise InvitationUnusable(invitation.status)
    return invitation


@transaction.atomic
def invitation_accept(*, user: User, token: str) -> Membership:
    """Single use: the conditional update claims the invitation exactly once."""
    invitation = invitation_for_token(token)
    if invitation.email.lower() != user.email.lower():
        raise InvitationUnusable("wrong_email")
    try:
        # The pending invitation already holds a seat; this refuses only when seats were lost
        # under it (e.g. the subscription ended), and serializes with seat removal.
        team_rules_check(
            organization_id=invitation.organization_id,
            role=invitation.role,
            invitation_id=invitation.pk,
        )
    except SeatRequired:
        raise InvitationUnusable("no_seat") from None
    claimed = (
        Invitation.objects.pending()
        .filter(pk=invitation.pk)
        .update(accepted_at=timezone.now(), accepted_by=user)
    )
    if not claimed:
        raise InvitationUnusable("accepted")
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    if created:
        audit_record(
            organization=invitation.organization,
            actor=user,
            action="invitation.accept",
            target=user.email,
            role=invitation.role,
        )
    profile_select(user=user, organization=invitation.organization)
    return membership


def _other_owners(membership: Membership) -> bool:
    return (
        Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


def _lock_owners(organization_id: UUID) -> None:
    # Serializes owner changes per organization so that two owners demoting each other at once
    # cannot leave it with none.
    list(
        Membership.objects.select_for_update()
        .filter(organization_id=organization_id, role=Role.OWNER)
        .values_list("pk", flat=True)
    )


@transaction.atomic
def membership_change_role(
    *, actor: User, membership: Membership, target: Membership, role: str
) -> Membership:
    """Nobody changes their own role; owners are changed only by owners; one owner stays."""
    if target.user_id == actor.pk:
        raise TeamRuleError("You cannot change your own role; ask another owner or admin.")
    if not allows(membership.role, permission_to_manage(target.role)) or not allows(
        membership.role, permission_to_manage(role)
    ):
        raise PermissionDenied
    _lock_owners(target.organization_id)
    if target.role == Role.OWNER and role != Role.OWNER and not _other_owners(target):
        raise TeamRuleError("The last owner cannot be demoted; make someone else owner first.")
    if target.role == Role.BILLING_MANAGER:
        # Billing managers hold no seat: becoming an owner, admin or member needs an empty one.
        team_rules_check(organization_id=target.organization_id, role=role)
    old_role = target.role
    target.role = role
    target.save(update_fields=["role"])
    audit_record(
        organization=target.organization,
        actor=actor,
        action="membership.change_role",
        target=target.user.email,
        old_role=old_role,
        role=role,
    )
    return target


@transaction.atomic
def membership_remove(*, actor: User, membership: Membership, target: Membership) -> None:
    """Nobody removes themselves (leaving is its own action); the last owner stays."""
    if target.user_id == actor.pk:
        raise TeamRuleError("You cannot remove yourself; use “Leave organization” instead.")
    if not allows(membership.role, permission_to_manage(target.role)):
        raise PermissionDenied
    _lock_owners(target.organization_id)
    if target.role == Role.OWNER and not _other_owners(target):
        raise TeamRuleError("The last owner cannot be removed.")
    target.delete()
    audit_record(
        organization=target.organization,
        actor=actor,
        action="membership.remove",
        target=target.user.email,
        role=target.role,
    )


@transaction.atomic
def membership_leave(*, membership: Membership) -> None:
    _lock_owners(membership.organization_id)
    if is_last_owner(membership=membership):
        raise TeamRuleError(
            "You are the last owner: make someone else owner, or delete the organization."
        )
    membership.delete()
    audit_record(
        organization=membership.organization,
        actor=membership.user,
        action="membership.leave",
        target=membership.user.email,
    )


def profile_select(*, user: User, organization: Organization | None) -> None:
    """Remember the profile chosen in the switcher (None: personal). Callers check membership."""
    user.active_organization = organization
    user.save(update_fields=["active_organization"])
