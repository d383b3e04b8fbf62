from collections.abc import Callable
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from accounts.models import User
from organizations import selectors, services
from organizations.access import membership_for
from organizations.exceptions import InvitationUnusable, SeatRequired, TeamRuleError
from organizations.forms import InviteForm, OrganizationForm, RoleForm
from organizations.models import Membership
from organizations.roles import MATRIX, Permission, Role, assignable_roles, invitable_roles


def _user(request: HttpRequest) -> User:
    assert isinstance(request.user, User)
    return request.user


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The chosen profile's landing page."""
    user = _user(request)
    if (
        user.active_organization_id
        and user.memberships.filter(organization_id=user.active_organization_id).exists()
    ):
        return redirect("org_overview", org_id=user.active_organization_id)
    return redirect("personal_profile")


@login_required
@require_POST
def profile_switch(request: HttpRequest) -> HttpResponse:
    choice = request.POST.get("profile", "")
    if choice in ("", "personal"):
        services.profile_select(user=_user(request), organization=None)
        return redirect("personal_profile")
    try:
        org_id = UUID(choice)
    except ValueError:
        messages.error(request, "Choose a profile from the list.")
        return redirect("home")
    membership = membership_for(request, org_id)
    services.profile_select(user=_user(request), organization=membership.organization)
    return redirect("org_overview", org_id=org_id)


@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        organization = services.organization_create(
            actor=_user(request), name=form.cleaned_data["name"]
        )
        messages.success(request, f"{organization.name} is created; you are its owner.")
        return redirect("org_overview", org_id=organization.pk)
    return render(request, "organizations/create.html", {"form": form})


@login_required
def members(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id)
    return _members_page(request, membership, InviteForm(roles=invitable_roles(membership.role)))


def _members_page(
    request: HttpRequest, membership: Membership, invite_form: InviteForm, status: int = 200
) -> HttpResponse:
    organization = membership.organization
    context = {
        "membership": membership,
        "tab": "members",
        "members": selectors.members_of_organization(organization=organization),
        "invitations": selectors.open_invitations(organization=organization),
        "invite_form": invite_form,
        "last_owner": selectors.is_last_owner(membership=membership),
        "assignable_roles": assignable_roles(membership.role),
        "invitable_roles": invitable_roles(membership.role),
        "matrix": [(label, [role in roles for role in Role]) for _, label, roles in MATRIX],
        "roles": list(Role),
    }
    return render(request, "organizations/members.html", context, status=status)


@login_required
@require_POST
def invite(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.INVITE_MEMBERS)
    form = InviteForm(request.POST, roles=invitable_roles(membership.role))
    if form.is_valid():
        try:
            services.invitation_create(
                actor=_user(request),
                membership=membership,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
            )
        except SeatRequired as error:
            form.add_error(None, error.message)
            # The page offers the way forward: the Seats tab's "add seats".
            form.no_empty_seat = True  # type: ignore[attr-defined]
        except TeamRuleError as error:
            form.add_error("email", error.message)
        else:
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
            return redirect("org_members", org_id=org_id)
    return _members_page(request, membership, form, status=400)


def _team_action(request: HttpRequest, org_id: UUID, action):  # type: ignore[no-untyped-def]
    """Run a team change and come back to the Members page with what happened."""
    try:
        message = action()
    except TeamRuleError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, message)
    return redirect("org_members", org_id=org_id)


def _invitation_action(
    request: HttpRequest,
    org_id: UUID,
    invitation_id: int,
    service: Callable[..., None],
    done: str,
) -> HttpResponse:
    """Resend or revoke one open invitation of this organization; `done` names its email."""
    membership = membership_for(request, org_id, permission=Permission.INVITE_MEMBERS)
    invitation = get_object_or_404(
        selectors.open_invitations(organization=membership.organization), pk=invitation_id
    )

    def action() -> str:
        service(actor=_user(request), membership=membership, invitation=invitation)
        return done.format(email=invitation.email)

    return _team_action(request, org_id, action)


@login_required
@require_POST
def invitation_resend(request: HttpRequest, org_id: UUID, invitation_id: int) -> HttpResponse:
    return _invitation_action(
        request,
        org_id,
        invitation_id,
        services.invitation_resend,
        "A new invitation link was sent to {email}.",
    )


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, org_id: UUID, invitation_id: int) -> HttpResponse:
    return _invitation_action(
        request,
        org_id,
        invitation_id,
        services.invitation_revoke,
        "The invitation for {email} is revoked.",
    )


def _target(membership: Membership, membership_id: int) -> Membership:
    return get_object_or_404(
        selectors.members_of_organization(organization=membership.organization), pk=membership_id
    )


@login_required
@require_POST
def member_role(request: HttpRequest, org_id: UUID, membership_id: int) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_TEAM)
    target = _target(membership, membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the listed roles.")
        return redirect("org_members", org_id=org_id)

    try:
        services.membership_change_role(
            actor=_user(request),
            membership=membership,
            target=target,
            role=form.cleaned_data["role"],
        )
    except SeatRequired as error:
        messages.error(
            request,
            format_html(
                '{} <a href="{}?seats=1">Add seats</a>',
                error.message,
                reverse("org_seats_add", args=[org_id]),
            ),
        )
    except TeamRuleError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{target.user.email} is now {target.get_role_display()}.")
    return redirect("org_members", org_id=org_id)


@login_required
def member_remove(request: HttpRequest, org_id: UUID, membership_id: int) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_TEAM)
    target = _target(membership, membership_id)
    if request.method != "POST":
        return render(
            request,
            "organizations/member_remove.html",
            {"membership": membership, "tab": "members", "target": target},
        )

    def action() -> str:
        services.membership_remove(actor=_user(request), membership=membership, target=target)
        return f"{target.user.email} is removed from {membership.organization.name}."

    return _team_action(request, org_id, action)


@login_required
def leave(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id)
    if request.method != "POST":
        context = {
            "membership": membership,
            "tab": "members",
            "last_owner": selectors.is_last_owner(membership=membership),
        }
        return render(request, "organizations/leave.html", context)
    try:
        services.membership_leave(membership=membership)
    except TeamRuleError as error:
        messages.error(request, error.message)
        return redirect("org_members", org_id=org_id)
    messages.success(request, f"You left {membership.organization.name}.")
    return redirect("home")


@login_required
def settings_tab(request: HttpRequest, org_id: UUID) -> HttpResponse:
    membership = membership_for(request, org_id, permission=Permission.MANAGE_SETTINGS)
    organization = membership.organization
    form = OrganizationForm(request.POST or None, initial={"name": organization.name})
    if request.method == "POST" and form.is_valid():
        services.organization_rename(
            actor=_user(request), organization=organization, name=form.cleaned_data["name"]
        )
        messages.success(request, "The organization is renamed.")
        return redirect("org_settings", org_id=org_id)
    return render(
        request,
        "organizations/settings.html",
        {"membership": membership, "tab": "settings", "form": form},
    )


_UNUSABLE_MESSAGES = {
    "not_found": "This invitation link is not valid. Ask for a new invitation.",
    "accepted": "This invitation was already used. Log in to reach the organization.",
    "revoked": "This invitation was revoked. Ask the organization for a new one.",
    "expired": "This invitation has expired. Ask the organization to resend it.",
    "wrong_email": "This invitation was sent to another email address than the one you are "
    "logged in with. Log out and sign up or log in with the invited address.",
    "no_seat": "The organization has no empty seat for you right now. Ask its owner or billing "
    "manager to add seats, then open this link again.",
}


def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """The link in the email: accept when logged in as the invited email, else log in or sign up."""
    try:
        invitation = services.invitation_for_token(token)
        if request.user.is_authenticated and request.method == "POST":
            membership = services.invitation_accept(user=_user(request), token=token)
            messages.success(request, f"Welcome to {membership.organization.name}.")
            return redirect("org_overview", org_id=membership.organization_id)
        if request.user.is_authenticated and _user(request).email != invitation.email:
            raise InvitationUnusable("wrong_email")
    except InvitationUnusable as unusable:
        return render(
            request,
            "organizations/invitation_unusable.html",
            {"message": _UNUSABLE_MESSAGES[unusable.reason]},
            status=410
            if unusable.reason in ("expired", "revoked", "accepted")
            else 404
            if unusable.reason == "not_found"
            else 403,
        )
    has_account = User.objects.filter(email__iexact=invitation.email).exists()
    return render(
        request,
        "organizations/invitation.html",
        {"invitation": invitation, "has_account": has_account, "token": token},
    )
