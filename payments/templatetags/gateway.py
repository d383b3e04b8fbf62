from django import template
from django.conf import settings
from django.templatetags.static import static
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def sandbox_ribbon(*, always: bool = False) -> SafeString | str:
    """The "no real money" ribbon on every page while the sandbox gateway is in use (`always` on
    the sandbox's own hosted pages). It reads the settings, not the request, so that it also shows
    on the 500 page, which has no context; it brings its own small stylesheet for the same reason
    (and for the admin's pages). A labelled section: a landmark, so that no page has content
    outside one (axe-core's `region`)."""
    if settings.BILLING_GATEWAY != "sandbox" and not always:
        return ""
    return format_html(
        '<link rel="stylesheet" href="{}">'
        '<section class="sandbox-ribbon" aria-label="Sandbox"><strong>Sandbox: no real money.'
        "</strong> Payments here are simulated: only test cards work, and nothing is charged."
        "</section>",
        static("css/ribbon.css"),
    )
