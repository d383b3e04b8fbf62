"""Fixed personas: an organization with one person per role, and a neighbouring organization
whose owner is the outsider. Whatever the neighbour holds must stay invisible to Acme's people."""

from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.test import Client

from accounts.models import User
from organizations.models import Organization
from organizations.roles import Role
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory


@dataclass
class World:
    org: Organization
    owner: User
    admin: User
    billing: User
    member: User
    neighbour: Organization
    outsider: User

    def person(self, role: str) -> User:
        return {
            Role.OWNER: self.owner,
            Role.ADMIN: self.admin,
            Role.BILLING_MANAGER: self.billing,
            Role.MEMBER: self.member,
            "outsider": self.outsider,
        }[role]


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    cache.clear()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(db: None) -> World:
    org = OrganizationFactory(name="Acme Robotics")
    neighbour = OrganizationFactory(name="Globex")
    people = {
        role: MembershipFactory(
            organization=org, role=role, user=UserFactory(email=f"{role}@acme.test")
        ).user
        for role in Role
    }
    outsider = MembershipFactory(
        organization=neighbour, role=Role.OWNER, user=UserFactory(email="outsider@globex.test")
    ).user
    return World(
        org=org,
        owner=people[Role.OWNER],
        admin=people[Role.ADMIN],
        billing=people[Role.BILLING_MANAGER],
        member=people[Role.MEMBER],
        neighbour=neighbour,
        outsider=outsider,
    )


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client
