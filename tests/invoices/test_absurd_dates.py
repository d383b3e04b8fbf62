"""Every date a person can type into the product, absurd ones included: the Invoices list and its
CSV, the Usage pages' custom range (organization and personal, page and CSV), and the admin's date
drill-down. Each gets a clear message (or the admin's own error page), never a 500."""

from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from tests.conftest import World, client_for
from tests.factories import UserFactory
from tests.invoices.test_views import make_invoice

pytestmark = pytest.mark.django_db

ABSURD = [
    "9999-12-31",  # exists, but its end of day does not (OverflowError before)
    "9999-01-01",
    "0000-01-01",
    "0001-01-01",
    "1999-12-31",
    "3000-01-01",
    "10000-01-01",
    "-1-01-01",
    "99999999999999999999-01-01",
    "9" * 5000,
    "1e309",
    "NaN",
    "2027-13-01",
    "2027-02-30",
    "2027-01-01\x00",
    "x" * 10_000,
]
DAY_RANGE = "Enter a date from 1 Jan 2000 to 31 Dec 2999."


def _messages(client: Client, response: Any) -> str:
    return " ".join(str(message) for message in get_messages(response.wsgi_request))


@pytest.mark.parametrize("field", ["date_from", "date_to"])
@pytest.mark.parametrize("value", ABSURD)
def test_the_invoices_list_and_csv_explain_an_absurd_date(
    world: World, field: str, value: str
) -> None:
    make_invoice(world.org, 1)
    client = client_for(world.owner)
    query = {field: value}
    page = client.get(reverse("org_invoices", args=[world.org.pk]), query)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Showing all invoices instead" in text
    assert DAY_RANGE in text or "Enter a valid date." in text
    assert [i.number for i in page.context["page"].object_list] == ["KB-000001"]
    # The export does not quietly hand over a file of everything: it goes to the list, which says.
    export = client.get(reverse("org_invoices_csv", args=[world.org.pk]), query)
    assert export.status_code == 302
    assert (
        export["Location"] == f"{reverse('org_invoices', args=[world.org.pk])}?{urlencode(query)}"
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("date_from", "2000-01-01", ["KB-000001"]),
        ("date_to", "2000-01-01", []),
        ("date_from", "2999-12-31", []),
        ("date_to", "2999-12-31", ["KB-000001"]),  # its end of day exists
    ],
)
def test_the_first_and_last_days_in_range_still_filter(
    world: World, field: str, value: str, expected: list[str]
) -> None:
    make_invoice(world.org, 1)  # 2 Jan 2027
    client = client_for(world.owner)
    page = client.get(reverse("org_invoices", args=[world.org.pk]), {field: value})
    assert page.context["form"].is_valid(), page.context["form"].errors
    assert [i.number for i in page.context["page"].object_list] == expected
    export = client.get(reverse("org_invoices_csv", args=[world.org.pk]), {field: value})
    assert export.status_code == 200
    assert (b"KB-000001" in b"".join(export.streaming_content)) == bool(expected)


@pytest.mark.parametrize("value", ABSURD)
def test_the_usage_custom_range_explains_an_absurd_date(world: World, value: str) -> None:
    client = client_for(world.owner)
    pages = [
        (reverse("org_usage", args=[world.org.pk]), reverse("org_usage_csv", args=[world.org.pk])),
        (reverse("personal_usage"), reverse("personal_usage_csv")),
    ]
    for page_url, csv_url in pages:
        for query in (
            {"period": "custom", "start": value, "end": "2026-01-31"},
            {"period": "custom", "start": "2026-01-01", "end": value},
        ):
            page = client.get(page_url, query)
            assert page.status_code == 200
            said = _messages(client, page)
            assert "Showing the last 30 days instead." in said
            assert "date" in said
            export = client.get(csv_url, query)
            assert export.status_code == 302


@pytest.mark.parametrize(
    "query",
    [
        {"created_at__year": "9999"},
        {"created_at__year": "9999", "created_at__month": "12"},
        {"created_at__year": "9999", "created_at__month": "12", "created_at__day": "31"},
        {"created_at__year": "99999999999999999999"},
        {"created_at__year": "9" * 5000},
        {"created_at__year": "0"},
        {"created_at__year": "-5"},
        {"created_at__year": "2027", "created_at__month": "13"},
    ],
)
def test_the_admin_date_drill_down_refuses_impossible_dates(query: dict[str, str]) -> None:
    staff = UserFactory(email="staff@kilo.test", is_staff=True, is_superuser=True)
    changelist = reverse("admin:organizations_organization_changelist")
    response = client_for(staff).get(changelist, query)
    assert response.status_code == 302
    assert response["Location"] == f"{changelist}?e=1"


def test_the_admin_date_drill_down_still_works(world: World) -> None:
    staff = UserFactory(email="staff@kilo.test", is_staff=True, is_superuser=True)
    changelist = reverse("admin:organizations_organization_changelist")
    year = str(world.org.created_at.year)
    response = client_for(staff).get(changelist, {"created_at__year": year})
    assert response.status_code == 200
    assert world.org.name in response.content.decode()
