from django.core.management import call_command

from accounts.models import User
from organizations.models import Membership, Organization
from organizations.roles import Role


def test_it_seeds_the_demo_once(db: None, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")
    acme = Organization.objects.get(name="Acme Robotics")
    globex = Organization.objects.get(name="Globex")
    roles = dict(Membership.objects.filter(organization=acme).values_list("user__email", "role"))
    assert roles["owner@example.com"] == Role.OWNER
    assert roles["billing@example.com"] == Role.BILLING_MANAGER
    assert roles["member@example.com"] == Role.MEMBER
    assert "other@example.com" not in roles
    assert Membership.objects.get(organization=globex).user.email == "other@example.com"
    assert User.objects.get(email="owner@example.com").check_password("kilo-demo-password")
    assert Membership.objects.count() == 7
