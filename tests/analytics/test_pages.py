"""The Usage tab and the personal usage page: who gets in, who sees what, filters, bad input,
charts, tables and the CSV export."""

import csv
import io
from datetime import date
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from analytics.models import UsageSettings
from credits.models import CreditAccount
from credits.services import account_for
from organizations.models import AuditEvent, Membership
from organizations.roles import Role
from tests.analytics.conftest import spend
from tests.conftest import World, client_for
from tests.credits.conftest import fund

ALL_ROLES = list(Role)


def usage_url(world: World, **params: str) -> str:
    return _with(reverse("org_usage", args=[world.org.pk]), params)


def csv_url(world: World, **params: str) -> str:
    return _with(reverse("org_usage_csv", args=[world.org.pk]), params)


def _with(url: str, params: dict[str, str]) -> str:

    return f"{url}?{urlencode(params)}" if params else url


def csv_rows(client: Client, url: str) -> list[dict[str, str]]:
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def messages_of(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def usage(world: World, acme: CreditAccount, globex: CreditAccount) -> None:
    """Acme: the owner and the member spend on two models and projects; Globex's owner (the
    outsider) spends a lot, which Acme's people must never see."""
    spend(acme, world.owner, cost=1_000_000, days_ago=1, project="alpha")
    spend(
        acme,
        world.owner,
        cost=2_000_000,
        days_ago=2,
        model="gpt-5",
        provider="openai",
        project="beta",
    )
    spend(acme, world.member, cost=300_000, days_ago=1, project="alpha")
    spend(acme, world.member, cost=40_000, days_ago=10, model="gpt-5", provider="openai")
    spend(acme, world.admin, cost=5_000, days_ago=45)  # outside the last 30 days
    spend(globex, world.outsider, cost=99_000_000, days_ago=1, project="alpha")


# Who gets in


@pytest.mark.parametrize("name", ["org_usage", "org_usage_csv"])
@pytest.mark.parametrize("role", ALL_ROLES)
def test_it_opens_to_every_role(world: World, name: str, role: str) -> None:
    response = client_for(world.person(role)).get(reverse(name, args=[world.org.pk]))
    assert response.status_code == 200


@pytest.mark.parametrize("name", ["org_usage", "org_usage_csv"])
def test_it_hides_the_organization_from_outsiders(world: World, name: str) -> None:
    response = client_for(world.outsider).get(reverse(name, args=[world.org.pk]))
    assert response.status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        lambda w: reverse("org_usage", args=[w.org.pk]),
        lambda w: reverse("org_usage_csv", args=[w.org.pk]),
        lambda w: reverse("personal_usage"),
        lambda w: reverse("personal_usage_csv"),
    ],
)
def test_it_sends_anonymous_visitors_to_log_in(world: World, url) -> None:  # type: ignore[no-untyped-def]
    response = client_for(None).get(url(world))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("role", "status"),
    [
        (Role.OWNER, 302),
        (Role.ADMIN, 302),
        (Role.BILLING_MANAGER, 403),
        (Role.MEMBER, 403),
        ("outsider", 404),
    ],
)
def test_only_owners_and_admins_change_what_members_see(
    world: World, role: str, status: int
) -> None:
    url = reverse("org_usage_visibility", args=[world.org.pk])
    response = client_for(world.person(role)).post(url, {"members_see_totals": "on"})
    assert response.status_code == status
    shown = UsageSettings.objects.filter(organization=world.org, members_see_totals=True).exists()
    assert shown == (status == 302)


def test_changing_what_members_see_is_audited(world: World) -> None:
    url = reverse("org_usage_visibility", args=[world.org.pk])
    client_for(world.admin).post(url, {"members_see_totals": "on"})
    client_for(world.admin).post(url, {})
    assert not UsageSettings.objects.get(organization=world.org).members_see_totals
    events = AuditEvent.objects.filter(organization=world.org, action="usage.visibility")
    assert [e.details["members_see_totals"] for e in events.order_by("pk")] == [True, False]


def test_it_refuses_to_change_what_members_see_with_a_get(world: World) -> None:
    response = client_for(world.owner).get(reverse("org_usage_visibility", args=[world.org.pk]))
    assert response.status_code == 405


# Who sees what


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN, Role.BILLING_MANAGER])
def test_owners_admins_and_billing_managers_see_everyone(
    world: World, usage: None, role: str
) -> None:
    response = client_for(world.person(role)).get(usage_url(world))
    report = response.context["report"]
    assert report.totals.cost == 3_340_000
    assert report.totals.requests == 4
    assert report.totals.members == 2
    assert {line.detail for line in report.by_member} == {"owner@acme.test", "member@acme.test"}
    content = response.content.decode()
    assert "member@acme.test" in content
    assert "$3.34" in content
    assert "outsider@globex.test" not in content
    assert "$99" not in content


def test_a_member_sees_only_their_own_usage(world: World, usage: None) -> None:
    client = client_for(world.member)
    response = client.get(usage_url(world))
    report = response.context["report"]
    assert report.totals.cost == 340_000
    assert [line.detail for line in report.by_member] == ["member@acme.test"]
    assert report.org_totals is None
    content = response.content.decode()
    assert "owner@acme.test" not in content
    assert "By member" not in content
    assert "$0.34" in content
    assert "$3.34" not in content


@pytest.mark.parametrize(
    "params",
    [
        {"member": "OWNER"},
        {"member": "OWNER", "period": "all"},
        {"project": "beta"},
        {"model": "gpt-5", "provider": "openai"},
        {"stack": "member"},
        {"period": "year", "stack": "member", "sort_member": "-cost"},
        {"period": "custom", "start": "2020-01-01", "end": "2026-03-15"},
    ],
)
def test_no_filter_shows_a_member_anyone_else(
    world: World, usage: None, params: dict[str, str]
) -> None:
    params = {k: (str(world.owner.pk) if v == "OWNER" else v) for k, v in params.items()}
    client = client_for(world.member)
    response = client.get(usage_url(world, **params))
    assert response.status_code == 200
    report = response.context["report"]
    own = {"member@acme.test"}
    assert {line.detail for line in report.by_member} <= own
    assert report.totals.cost <= 340_000
    assert "owner@acme.test" not in response.content.decode()
    export = client.get(csv_url(world, **params))
    if messages_of(response):
        # Another member, or a project only others used: the export goes back to the page,
        # which says why (and the same for a project nobody used: nothing is revealed).
        assert export.status_code == 302
        assert export["Location"].startswith(reverse("org_usage", args=[world.org.pk]))
    else:
        assert {row["member_email"] for row in csv_rows(client, csv_url(world, **params))} <= own
    if "member" in params:
        assert "You can see only your own usage here; showing yours." in messages_of(response)
    if params.get("project") == "beta":
        assert messages_of(response) == [
            "No usage was ever recorded for project “beta”; showing every project."
        ]


def test_a_member_sees_the_totals_only_when_the_organization_allows(
    world: World, usage: None
) -> None:
    client = client_for(world.member)
    assert client.get(usage_url(world)).context["org_cards"] is None
    UsageSettings.objects.create(organization=world.org, members_see_totals=True)
    response = client.get(usage_url(world))
    assert response.context["report"].org_totals.cost == 3_340_000
    assert response.context["report"].totals.cost == 340_000
    content = response.content.decode()
    assert "Acme Robotics in total" in content
    assert "$3.34" in content
    assert "owner@acme.test" not in content
    assert {row["member_email"] for row in csv_rows(client, csv_url(world))} == {"member@acme.test"}


def test_the_personal_page_shows_personal_usage_only(world: World, usage: None) -> None:
    personal = account_for(user=world.member)
    fund(personal, 10**9, key="personal")
    spend(personal, world.member, cost=77_000, days_ago=2, project="side-project")
    client = client_for(world.member)
    response = client.get(reverse("personal_usage"))
    assert response.status_code == 200
    assert response.context["report"].totals.cost == 77_000
    assert "side-project" in response.content.decode()
    rows = csv_rows(client, reverse("personal_usage_csv"))
    assert [(r["project"], r["cost_microdollars"]) for r in rows] == [("side-project", "77000")]
    # Nobody else's personal usage, whatever they ask for.
    response = client_for(world.owner).get(reverse("personal_usage") + f"?member={world.member.pk}")
    assert response.context["report"].totals.cost == 0


def test_a_former_member_stays_in_the_organization_numbers(world: World, usage: None) -> None:
    Membership.objects.filter(organization=world.org, user=world.member).delete()
    response = client_for(world.owner).get(usage_url(world))
    report = response.context["report"]
    assert report.totals.cost == 3_340_000
    assert "member@acme.test (no longer a member)" in {line.detail for line in report.by_member}
    response = client_for(world.owner).get(usage_url(world, member=str(world.member.pk)))
    assert response.context["report"].totals.cost == 340_000
    assert not messages_of(response)


# Filters, periods and tables


def test_filters_combine(world: World, usage: None) -> None:
    spend(
        account_for(organization=world.org),
        world.owner,
        cost=11,
        days_ago=3,
        model="gpt-5",
        provider="openai",
        project="alpha",
    )
    client = client_for(world.owner)
    cases = [
        ({"member": str(world.owner.pk)}, 3_000_011),
        ({"member": str(world.owner.pk), "model": "gpt-5"}, 2_000_011),
        ({"member": str(world.owner.pk), "model": "gpt-5", "project": "alpha"}, 11),
        ({"provider": "anthropic"}, 1_300_000),
        ({"project": "(none)"}, 40_000),
        ({"period": "7d", "model": "gpt-5"}, 2_000_011),
        ({"period": "all", "member": str(world.admin.pk)}, 5_000),
        (
            {
                "period": "custom",
                "start": "2026-03-05",
                "end": "2026-03-05",
                "member": str(world.member.pk),
            },
            40_000,
        ),
    ]
    for params, expected in cases:
        response = client.get(usage_url(world, **params))
        assert not messages_of(response), params
        assert response.context["report"].totals.cost == expected, params
        rows = csv_rows(client, csv_url(world, **params))
        assert sum(int(r["cost_microdollars"]) for r in rows) == expected, params


def test_each_breakdown_row_links_to_its_filtered_view(world: World, usage: None) -> None:
    client = client_for(world.owner)
    response = client.get(usage_url(world, period="7d"))
    tables = {table.table.value: table for table in response.context["tables"]}
    member_row = next(r for r in tables["member"].rows if r.line.detail == "member@acme.test")
    assert f"member={world.member.pk}" in member_row.href
    assert "period=7d" in member_row.href
    drilled = client.get(member_row.href)
    assert drilled.context["report"].totals.cost == 300_000
    project_row = next(r for r in drilled.context["tables"][3].rows if r.line.label == "alpha")
    both = client.get(project_row.href)
    assert both.context["filters"].member == world.member.pk
    assert both.context["filters"].project == "alpha"
    assert both.context["report"].totals.cost == 300_000
    assert f'href="{project_row.href.replace("&", "&amp;")}"' in drilled.content.decode()


def test_the_tables_sort_by_any_column(world: World, usage: None) -> None:
    client = client_for(world.owner)
    default = client.get(usage_url(world)).context["tables"][1]
    assert [row.line.label for row in default.rows] == ["gpt-5", "claude-sonnet-4-5"]
    by_name = client.get(usage_url(world, sort_model="name")).context["tables"][1]
    assert [row.line.label for row in by_name.rows] == ["claude-sonnet-4-5", "gpt-5"]
    requests = client.get(usage_url(world, sort_member="requests")).context["tables"][0]
    assert [row.line.requests for row in requests.rows] == [2, 2]
    name_column = by_name.columns[0]
    assert name_column.state == "ascending"
    assert "sort_model=-name" in name_column.href


def test_summary_figures_compare_with_the_previous_period(
    world: World, acme: CreditAccount
) -> None:
    spend(acme, world.owner, cost=2_000_000, days_ago=2)
    spend(acme, world.owner, cost=1_000_000, days_ago=9)
    spend(acme, world.member, cost=500_000, days_ago=9)
    response = client_for(world.owner).get(usage_url(world, period="7d"))
    report = response.context["report"]
    assert (report.totals.cost, report.previous.cost) == (2_000_000, 1_500_000)
    cards = {card.label: card for card in response.context["cards"]}
    assert cards["Spend"].change == "+33.3%"
    assert cards["Requests"].change == "−50.0%"
    assert cards["Active members"].value == "1"
    assert cards["Average cost per request"].value == "$2.00"
    assert response.context["period"].previous == (date(2026, 3, 2), date(2026, 3, 8))


def test_the_spend_chart_stacks_by_model_or_member_with_a_table_view(
    world: World, usage: None
) -> None:
    client = client_for(world.owner)
    by_model = client.get(usage_url(world))
    chart = by_model.context["spend_chart"]
    assert chart.title == "Spend per day by model"
    assert len(chart.columns) == 30
    assert {s.label for s in chart.series} == {"claude-sonnet-4-5", "gpt-5"}
    assert sum(c.total for c in chart.columns) == 3_340_000
    content = by_model.content.decode()
    assert "<svg" in content
    assert '<title id="spend-svg-title">Spend per day by model</title>' in content
    assert "Table view of “Spend per day by model”" in content
    by_member = client.get(usage_url(world, stack="member")).context["spend_chart"]
    assert by_member.title == "Spend per day by member"
    assert {s.total for s in by_member.series} == {3_000_000, 340_000}
    longer = client.get(usage_url(world, period="custom", start="2025-01-01", end="2026-03-15"))
    assert longer.context["spend_chart"].unit == "week"
    assert longer.context["spend_chart"].title == "Spend per week by model"
    assert sum(c.total for c in longer.context["spend_chart"].columns) == 3_345_000
    longest = client.get(usage_url(world, period="custom", start="2020-01-01", end="2026-03-15"))
    assert longest.context["spend_chart"].unit == "month"
    assert len(longest.context["spend_chart"].columns) == 75


def test_an_empty_period_says_what_to_do(world: World) -> None:
    response = client_for(world.owner).get(usage_url(world))
    assert response.status_code == 200
    assert "No usage in this view" in response.content.decode()


# Bad input


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"period": "fortnight"},
            "“fortnight” is not a period we offer; showing the last 30 days.",
        ),
        (
            {"period": "custom", "start": "2026-03-10", "end": "2026-03-01"},
            "The custom range ends before it starts.",
        ),
        (
            {"period": "custom", "start": "yesterday", "end": "2026-03-01"},
            "The start date “yesterday” is not a date like 2025-01-31.",
        ),
        (
            {"period": "custom", "start": "1999-01-01", "end": "2026-03-01"},
            "The start date must be between 1 Jan 2020 and today (15 Mar 2026, UTC).",
        ),
        (
            {"period": "custom", "start": "2026-03-01", "end": "2027-01-01"},
            "The end date must be between 1 Jan 2020 and today (15 Mar 2026, UTC).",
        ),
        (
            {"period": "custom", "start": "2026-03-01"},
            "A custom range needs a start and an end date.",
        ),
        (
            {"period": "custom", "start": "2026-02-30", "end": "2026-03-01"},
            "The start date “2026-02-30” is not a date like 2025-01-31.",
        ),
        ({"member": "OUTSIDER"}, "That member is not in this organization; showing everyone."),
        ({"member": "abc"}, "That member is not in this organization; showing everyone."),
        (
            {"member": "99999999999999999999999"},
            "That member is not in this organization; showing everyone.",
        ),
        ({"model": "gpt-99"}, "There is no model “gpt-99”; showing every model."),
        ({"provider": "acme-ai"}, "There is no provider “acme-ai”; showing every provider."),
        (
            {"project": "nope"},
            "No usage was ever recorded for project “nope”; showing every project.",
        ),
        ({"project": "x" * 500}, "That project is not one we know; showing every project."),
        ({"model": "a\x00b"}, "That model is not one we know; showing every model."),
        ({"stack": "colour"}, "Charts can be stacked by model or by member; showing by model."),
        ({"sort_model": "price"}, "The model table cannot be sorted by “price”."),
    ],
)
def test_bad_input_gets_a_message_and_the_default_view(
    world: World, usage: None, params: dict[str, str], message: str
) -> None:
    params = {k: (str(world.outsider.pk) if v == "OUTSIDER" else v) for k, v in params.items()}
    client = client_for(world.owner)
    response = client.get(usage_url(world, **params))
    assert response.status_code == 200
    assert message in messages_of(response)
    assert response.context["period"].start == date(2026, 2, 14)
    assert response.context["report"].totals.cost == 3_340_000
    content = response.content.decode()
    assert "outsider@globex.test" not in content
    # The export of bad input goes to the page, which says what was wrong.
    answer = client.get(csv_url(world, **params))
    assert answer.status_code == 302
    followed = client.get(answer["Location"])
    assert message in messages_of(followed)


def test_the_outsider_gets_nothing_of_acme_even_by_their_own_id(world: World, usage: None) -> None:
    response = client_for(world.outsider).get(usage_url(world, member=str(world.outsider.pk)))
    assert response.status_code == 404


# CSV


def test_the_csv_matches_the_page(world: World, usage: None) -> None:
    client = client_for(world.owner)
    for params in (
        {},
        {"period": "all"},
        {"project": "alpha"},
        {"member": str(world.member.pk), "period": "year"},
    ):
        report = client.get(usage_url(world, **params)).context["report"]
        rows = csv_rows(client, csv_url(world, **params))
        assert sum(int(r["cost_microdollars"]) for r in rows) == report.totals.cost
        assert sum(int(r["requests"]) for r in rows) == report.totals.requests
        assert sum(int(r["input_tokens"]) for r in rows) == report.totals.input_tokens
    rows = csv_rows(client, csv_url(world, period="all"))
    assert list(rows[0]) == [
        "date",
        "member_id",
        "member_email",
        "provider",
        "model",
        "project",
        "requests",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_microdollars",
    ]
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    assert {r["member_email"] for r in rows} == {
        "owner@acme.test",
        "member@acme.test",
        "admin@acme.test",
    }


def test_the_csv_is_streamed_and_named_after_the_period(world: World, usage: None) -> None:
    response = client_for(world.owner).get(csv_url(world, period="7d"))
    assert response.streaming
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="usage-acme-robotics-2026-03-09-2026-03-15.csv"'
    )


def test_the_csv_defuses_spreadsheet_formulas(world: World, acme: CreditAccount) -> None:
    spend(acme, world.member, cost=10, project='=HYPERLINK("http://evil")')
    rows = csv_rows(client_for(world.owner), csv_url(world))
    assert rows[0]["project"] == '\'=HYPERLINK("http://evil")'
