"""Where to reach support (issue 23, item 14): pages and emails said "contact support" and no
support contact existed. SUPPORT_EMAIL is shown wherever support is mentioned."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.template.utils import get_app_template_dirs
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from organizations.models import Organization
from tests.conftest import World, client_for

ADDRESS = "help@kilo.test"
MENTION = re.compile(r"\bsupport\b", re.IGNORECASE)
TAG = re.compile(r"{%.*?%}", re.DOTALL)
NEAR = 120  # characters: the address comes in the same sentence


def our_templates() -> list[Path]:
    folders = [Path(folder) for folder in settings.TEMPLATES[0]["DIRS"]]
    folders += [Path(folder) for folder in get_app_template_dirs("templates")]
    root = Path(settings.BASE_DIR)
    return sorted(
        path
        for folder in folders
        if folder.is_relative_to(root) and ".venv" not in folder.parts
        for path in folder.rglob("*")
        if path.suffix in {".html", ".txt"}
    )


def test_every_mention_of_support_in_a_template_gives_the_address() -> None:
    templates = our_templates()
    assert len(templates) > 50
    unanswered = []
    for path in templates:
        # The tags that print the address count as the address; other tags ({% load support %})
        # are not mentions.
        text = TAG.sub(
            lambda tag: (
                "<ADDRESS>" if "support_email" in tag[0] or "support_link" in tag[0] else ""
            ),
            path.read_text(),
        )
        for mention in MENTION.finditer(text):
            if "<ADDRESS>" not in text[mention.end() : mention.end() + NEAR]:
                unanswered.append(f"{path.name}: …{text[mention.start() : mention.end() + 60]}…")
    assert not unanswered, "\n".join(unanswered)


@override_settings(SUPPORT_EMAIL=ADDRESS)
def test_a_staff_suspension_with_nothing_owed_tells_where_to_write(world: World) -> None:
    Organization.objects.filter(pk=world.org.pk).update(
        billing_state="suspended",
        suspended_at=timezone.now(),
        suspended_by_staff=True,
        suspension_reason="Unusual traffic",
    )
    owner, member = client_for(world.owner), client_for(world.member)
    for client, url in (
        (owner, reverse("org_pay_now", args=[world.org.pk])),
        (owner, reverse("org_account_status", args=[world.org.pk])),
        (member, reverse("personal_profile")),
    ):
        page = client.get(url).content.decode()
        if "contact support" in page.lower():
            assert f'<a href="mailto:{ADDRESS}">{ADDRESS}</a>' in page, url
    page = owner.get(reverse("org_pay_now", args=[world.org.pk])).content.decode()
    assert page.count(f"mailto:{ADDRESS}") == 2  # the banner and the page


@override_settings(SUPPORT_EMAIL=ADDRESS)
@pytest.mark.parametrize(
    "template",
    [
        "emails/billing_suspended_by_staff.txt",
        "emails/billing_deleted.txt",
        "emails/billing_deletion_warning.txt",
        "500.html",
    ],
)
def test_emails_and_the_error_page_give_the_address(template: str) -> None:
    text = render_to_string(
        template, {"organization": Organization(name="Acme Robotics"), "days": 3}
    )
    assert ADDRESS in text
