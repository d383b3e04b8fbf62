"""Every seat page: owners, admins and billing managers 200, members 403, outsiders 404,
anonymous visitors to the log-in page. The same for every action posted."""

import uuid

import pytest
from django.urls import reverse

from organizations.roles import Role
from seats.models import SeatSubscription
from tests.conftest import World, client_for
from tests.seats.conftest import buy

MANAGERS = {Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER}
PAGES = [
    ("org_seats", {}),
    ("org_seats_buy", {"plan": "teams", "seats": 5}),
    ("org_seats_add", {"seats": 2}),
    ("org_seats_remove", {"seats": 1}),
    ("org_seats_cancel", {}),
    ("org_seats_resume", {}),
]


@pytest.fixture
def bought(world: World) -> World:
    buy(world.org, world.owner, seats=6)
    return world


@pytest.mark.parametrize(("name", "query"), PAGES)
@pytest.mark.parametrize("role", list(Role))
def test_each_role_by_the_matrix(
    bought: World, name: str, query: dict[str, object], role: str
) -> None:
    response = client_for(bought.person(role)).get(reverse(name, args=[bought.org.pk]), query)
    assert response.status_code == (200 if role in MANAGERS else 403)


@pytest.mark.parametrize(("name", "query"), PAGES)
def test_outsiders_get_404(bought: World, name: str, query: dict[str, object]) -> None:
    # The outsider owns the neighbour, which has seats of its own.
    buy(bought.neighbour, bought.outsider, seats=2)
    response = client_for(bought.outsider).get(reverse(name, args=[bought.org.pk]), query)
    assert response.status_code == 404


@pytest.mark.parametrize(("name", "query"), PAGES)
def test_anonymous_visitors_log_in(bought: World, name: str, query: dict[str, object]) -> None:
    response = client_for(None).get(reverse(name, args=[bought.org.pk]), query)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("org_seats_buy", {"plan": "teams", "seats": 5, "key": str(uuid.uuid4())}),
        (
            "org_seats_add",
            {
                "seats": 2,
                "key": str(uuid.uuid4()),
                "proration_date": 1,
                "period_end": 1,
                "unit_amount": 1,
            },
        ),
        ("org_seats_remove", {"seats": 1, "key": str(uuid.uuid4())}),
        ("org_seats_cancel", {}),
        ("org_seats_resume", {}),
    ],
)
@pytest.mark.parametrize("who", [Role.MEMBER, "outsider", None])
def test_actions_are_refused_to_those_who_may_not(
    bought: World, name: str, data: dict[str, object], who: str | None
) -> None:
    before = SeatSubscription.objects.get(organization=bought.org)
    user = bought.person(who) if who else None
    response = client_for(user).post(reverse(name, args=[bought.org.pk]), data)
    expected = {Role.MEMBER: 403, "outsider": 404, None: 302}[who]
    assert response.status_code == expected
    after = SeatSubscription.objects.get(organization=bought.org)
    assert (after.quantity, after.cancel_at_period_end) == (before.quantity, False)
