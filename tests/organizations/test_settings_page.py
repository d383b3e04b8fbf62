"""Where each organization setting lives (issue 23, item 12): the Members page's permission
matrix said the Settings tab held "name, member daily limits, usage visibility", while Settings
held only the name (and deleting). The matrix now names the tab of each setting, and Settings
links to the ones that live beside what they govern."""

import re

import pytest
from django.urls import reverse

from organizations.roles import Role
from tests.conftest import World, client_for


def test_the_matrix_says_on_which_tab_each_setting_lives(world: World) -> None:
    page = client_for(world.member).get(reverse("org_members", args=[world.org.pk]))
    rows = re.findall(r"<tr><td>([^<]*)</td>", page.content.decode())
    settings_row = next(row for row in rows if "audit log" in row)
    for setting, tab in (
        ("Rename the organization", "Settings"),
        ("member daily limits", "Credits"),
        ("monthly budgets", "Members"),
        ("what members see of usage", "Usage"),
    ):
        assert f"{setting} ({tab})" in settings_row, settings_row
    assert "Settings (name, member daily limits" not in page.content.decode()


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_settings_links_to_each_setting_that_lives_on_another_tab(world: World, role: Role) -> None:
    client = client_for(world.person(role))
    page = client.get(reverse("org_settings", args=[world.org.pk])).content.decode()
    # Each link leads to the page that holds the form, and to the form on it.
    for label, url, marker in (
        (
            "Daily limit per member",
            reverse("org_credits", args=[world.org.pk]) + "#daily-limit",
            'id="daily-limit"',
        ),
        ("Monthly budgets", reverse("org_member_budgets", args=[world.org.pk]), "<form"),
        (
            "What members see",
            reverse("org_usage", args=[world.org.pk]) + "#visibility-title",
            'id="visibility-title"',
        ),
    ):
        assert f'<a href="{url}">{label}</a>' in page, label
        target = client.get(url.partition("#")[0])
        assert target.status_code == 200, label
        assert marker in target.content.decode(), label
