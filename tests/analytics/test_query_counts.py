"""A Usage page costs the same number of queries whether the organization has two members or
thirty, ten events or a few hundred: it reads rollups, in a fixed number of statements."""

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from credits.models import CreditAccount
from organizations.models import Membership
from organizations.roles import Role
from tests.analytics.conftest import spend
from tests.conftest import World, client_for
from tests.factories import UserFactory

MODELS = [
    ("anthropic", "claude-sonnet-4-5"),
    ("openai", "gpt-5"),
    ("anthropic", "claude-haiku-4-5"),
]
MAX_QUERIES = 16


def grow(world: World, account: CreditAccount, *, members: int, events: int) -> None:
    people = [world.owner, world.member]
    for n in range(members):
        person = UserFactory(email=f"extra{n}@acme.test")
        Membership.objects.create(organization=world.org, user=person, role=Role.MEMBER)
        people.append(person)
    for n in range(events):
        provider, model = MODELS[n % len(MODELS)]
        spend(
            account,
            people[n % len(people)],
            cost=1_000 + n,
            days_ago=n % 40,
            provider=provider,
            model=model,
            project=f"p{n % 7}",
        )


PAGES: list[tuple[str, Callable[[World], str]]] = [
    (
        "owner, everything",
        lambda w: reverse("org_usage", args=[w.org.pk]) + "?period=all&stack=member",
    ),
    (
        "owner, filtered",
        lambda w: (
            reverse("org_usage", args=[w.org.pk]) + f"?member={w.member.pk}&model=gpt-5&project=p1"
        ),
    ),
    ("member", lambda w: reverse("org_usage", args=[w.org.pk]) + "?period=year"),
]


def count_queries(world: World, role: str, url: str) -> int:
    client = client_for(world.person(role))
    client.get(url)  # warm: the session row, the cache
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(("label", "url"), PAGES)
def test_the_page_reads_a_fixed_number_of_queries(
    world: World, acme: CreditAccount, label: str, url, django_assert_max_num_queries
) -> None:  # type: ignore[no-untyped-def]
    role = Role.MEMBER if label == "member" else Role.OWNER
    grow(world, acme, members=0, events=10)
    small = count_queries(world, role, url(world))
    grow(world, acme, members=30, events=300)
    large = count_queries(world, role, url(world))
    assert small == large
    client = client_for(world.person(role))
    with django_assert_max_num_queries(MAX_QUERIES):
        client.get(url(world))


def test_the_export_reads_a_fixed_number_of_queries(world: World, acme: CreditAccount) -> None:
    url = reverse("org_usage_csv", args=[world.org.pk]) + "?period=all"
    client = client_for(world.owner)

    def exported() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
            b"".join(response.streaming_content)
        return len(queries)

    grow(world, acme, members=0, events=10)
    small = exported()
    grow(world, acme, members=30, events=300)
    assert exported() == small
