"""The Usage charts on a phone (issue 23, item 10): every word and number of a chart is drawn at
least 11 px tall at 390 px. Scaled with the chart's viewBox into a phone's width, the axes were
drawn about 5 px tall and the bars' labels about 8 px."""

import pytest
from django.urls import reverse

from credits.services import api_token_create
from organizations.roles import Role
from tests.browser.support import requires_chromium
from tests.browser.test_journeys import NewPage, acme, join, log_in, spend

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True)]


MIN_TEXT_PX = 11
# Each element of a chart that holds text, with the size it is drawn at: an SVG element's font
# size times the vertical scale from its user units to the screen (a viewBox shrinks it), an
# HTML element's computed font size. Hidden elements (a phone's left-out axis labels) aside.
CHART_TEXT = """() => [...document.querySelectorAll('figure.chart *')]
  .filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
  .filter(e => e.getClientRects().length && e.getBoundingClientRect().width > 0)
  .filter(e => !e.closest('.visually-hidden, title, desc'))
  .map(e => {
    const size = parseFloat(getComputedStyle(e).fontSize);
    const scale = e instanceof SVGGraphicsElement ? Math.abs(e.getScreenCTM().d) : 1;
    return {text: e.textContent.trim().slice(0, 30), px: Math.round(size * scale * 10) / 10,
            height: Math.round(e.getBoundingClientRect().height * 10) / 10};
  })"""


def test_usage_charts_print_their_text_at_least_11_px_tall_on_a_phone(
    live: str, new_page: NewPage
) -> None:
    organization, _ = acme(live, seats=3, credits_usd=100)
    member = join(organization, "max@acme.test", Role.MEMBER, "Max Member-Maximilian")
    _, token = api_token_create(user=member, name="laptop")
    for n in range(3):
        assert spend(live, token, organization, project=f"project-{n}").status_code == 201
    page = new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, "olivia@acme.test")
    small: list[str] = []
    for query in ("", "?period=30d&stack=member", "?period=year"):
        page.goto(reverse("org_usage", args=[organization.pk]) + query)
        texts = page.evaluate(CHART_TEXT)
        labels = {text["text"] for text in texts}
        # The axes, the bars' labels and amounts and the legend are all measured.
        assert {"$0", "claude-sonnet-4", "project-0"} <= labels, labels
        small += [f"{query or 'default'}: {t}" for t in texts if t["px"] < MIN_TEXT_PX]
    assert not small, "\n".join(small)
