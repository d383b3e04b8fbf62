import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from organizations.models import AuditEvent, Invitation, Membership
from organizations.roles import Role
from tests.conftest import World, client_for
from tests.factories import UserFactory


def invite(world: World, email: str, role: str = Role.MEMBER, by: User | None = None) -> None:
    response = client_for(by or world.owner).post(
        reverse("org_invite", args=[world.org.pk]), {"email": email, "role": role}
    )
    assert response.status_code == 302, response.content.decode()


@pytest.fixture
def sent(world: World, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    def send(email: str, role: str = Role.MEMBER, by: User | None = None) -> str:
        """Invite through the page; the token, from the email sent after commit."""
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            invite(world, email, role, by)
        assert len(mail.outbox) == 1
        assert mail.outbox[0].to == [email]
        match = re.search(r"/invitations/([\w-]+)/", mail.outbox[0].body)
        assert match
        return match.group(1)

    return send


def test_it_lets_the_invited_user_accept_once(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    newbie = UserFactory(email="newbie@acme.test")
    token = sent(newbie.email, Role.ADMIN)
    client = client_for(newbie)
    url = reverse("invitation_accept", args=[token])
    assert "Join Acme Robotics" in client.get(url).content.decode()
    response = client.post(url)
    assert response.status_code == 302
    membership = Membership.objects.get(user=newbie, organization=world.org)
    assert membership.role == Role.ADMIN
    newbie.refresh_from_db()
    assert newbie.active_organization_id == world.org.pk
    assert (
        AuditEvent.objects.filter(organization=world.org, action="invitation.accept").count() == 1
    )
    # Reused link: a clear page, no second membership.
    again = client.post(url)
    assert again.status_code == 410
    assert "already used" in again.content.decode()
    assert Membership.objects.filter(user=newbie).count() == 1


def test_it_lets_a_new_person_sign_up_from_the_link(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    token = sent("fresh@acme.test")
    url = reverse("invitation_accept", args=[token])
    page = client_for(None).get(url).content.decode()
    assert "Create your account to accept" in page
    client = client_for(None)
    response = client.post(
        reverse("signup"),
        {
            "email": "fresh@acme.test",
            "name": "Fresh",
            "password1": "correct-horse-battery-9",
            "password2": "correct-horse-battery-9",
            "next": url,
        },
    )
    assert response["Location"] == url
    client.post(url)
    assert Membership.objects.filter(user__email="fresh@acme.test", role=Role.MEMBER).exists()


def test_it_refuses_a_different_email(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    token = sent("someone@acme.test")
    response = client_for(world.outsider).post(reverse("invitation_accept", args=[token]))
    assert response.status_code == 403
    assert "another email address" in response.content.decode()
    assert not Membership.objects.filter(user=world.outsider, organization=world.org).exists()
    assert Invitation.objects.get(email="someone@acme.test").accepted_at is None


def test_it_refuses_an_expired_link(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    token = sent("late@acme.test")
    late = UserFactory(email="late@acme.test")
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        response = client_for(late).post(reverse("invitation_accept", args=[token]))
    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert not Membership.objects.filter(user=late).exists()


def test_it_refuses_a_revoked_link(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    token = sent("gone@acme.test")
    invitation = Invitation.objects.get(email="gone@acme.test")
    client_for(world.owner).post(
        reverse("org_invitation_revoke", args=[world.org.pk, invitation.pk])
    )
    user = UserFactory(email="gone@acme.test")
    response = client_for(user).post(reverse("invitation_accept", args=[token]))
    assert response.status_code == 410
    assert "revoked" in response.content.decode()
    assert not Membership.objects.filter(user=user).exists()


def test_it_refuses_an_unknown_link(world: World) -> None:
    response = client_for(world.member).get(reverse("invitation_accept", args=["not-a-token"]))
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_resending_replaces_the_link_and_extends_it(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    old_token = sent("again@acme.test")
    invitation = Invitation.objects.get(email="again@acme.test")
    with time_machine.travel(timezone.now() + timedelta(days=6)):
        mail.outbox.clear()
        client_for(world.owner).post(
            reverse("org_invitation_resend", args=[world.org.pk, invitation.pk])
        )
    invitation.refresh_from_db()
    assert invitation.expires_at > timezone.now() + timedelta(days=12)
    user = UserFactory(email="again@acme.test")
    assert client_for(user).post(reverse("invitation_accept", args=[old_token])).status_code == 404
    assert not Membership.objects.filter(user=user).exists()


def test_billing_managers_invite_members_only(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    sent("m@acme.test", Role.MEMBER, world.billing)
    response = client_for(world.billing).post(
        reverse("org_invite", args=[world.org.pk]), {"email": "a@acme.test", "role": Role.ADMIN}
    )
    assert response.status_code == 400
    assert not Invitation.objects.filter(email="a@acme.test").exists()


def test_admins_cannot_invite_owners(world: World) -> None:
    response = client_for(world.admin).post(
        reverse("org_invite", args=[world.org.pk]), {"email": "o@acme.test", "role": Role.OWNER}
    )
    assert response.status_code == 400
    assert not Invitation.objects.filter(email="o@acme.test").exists()


def test_it_refuses_a_second_open_invitation_and_existing_members(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    sent("twice@acme.test")
    response = client_for(world.owner).post(
        reverse("org_invite", args=[world.org.pk]),
        {"email": "TWICE@acme.test", "role": Role.MEMBER},
    )
    assert "already has an open invitation" in response.content.decode()
    response = client_for(world.owner).post(
        reverse("org_invite", args=[world.org.pk]),
        {"email": world.member.email, "role": Role.MEMBER},
    )
    assert "already a member" in response.content.decode()
    assert Invitation.objects.filter(organization=world.org).count() == 1


def test_it_writes_an_audit_event_per_invitation(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    sent("audited@acme.test")
    event = AuditEvent.objects.get(action="invitation.create")
    assert (event.organization, event.actor, event.target) == (
        world.org,
        world.owner,
        "audited@acme.test",
    )


def test_a_billing_manager_cannot_revoke_an_admin_invitation(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    sent("adm@acme.test", Role.ADMIN)
    invitation = Invitation.objects.get(email="adm@acme.test")
    response = client_for(world.billing).post(
        reverse("org_invitation_revoke", args=[world.org.pk, invitation.pk])
    )
    assert response.status_code == 403
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_an_invitation_of_the_neighbour_cannot_be_touched(world: World, sent) -> None:  # type: ignore[no-untyped-def]
    neighbour_invitation = Invitation.objects.create(
        organization=world.neighbour,
        email="x@globex.test",
        role=Role.MEMBER,
        token_hash="f" * 64,
        expires_at=timezone.now() + timedelta(days=7),
    )
    response = client_for(world.owner).post(
        reverse("org_invitation_revoke", args=[world.org.pk, neighbour_invitation.pk])
    )
    assert response.status_code == 404
    neighbour_invitation.refresh_from_db()
    assert neighbour_invitation.revoked_at is None
    assert User.objects.filter(email="x@globex.test").count() == 0
