"""Staff's page of findings: filtered by kind, state and payer; both sides side by side; check
again, re-sync from the gateway (where safe) and mark explained, each with a note (audited)."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from accounts.models import User
from payments.gateway import GatewayError
from reconciliation.models import Finding, ReconciliationRun
from reconciliation.services import finding_check_again, finding_explain, finding_resync


class PayerFilter(admin.SimpleListFilter):
    title = "payer"
    parameter_name = "payer"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        payers = (
            Finding.objects.order_by("payer")
            .values_list("payer", "organization__name", "user__email")
            .distinct()[:200]
        )
        return [(payer, name or email or payer) for payer, name, email in payers]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Finding]) -> QuerySet[Finding]:
        if self.value():
            return queryset.filter(payer=self.value())
        return queryset


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), required=False)


def _sides(finding: Finding) -> str:
    """What each side says, row by row; the rows that differ are marked ≠ (and highlighted)."""
    theirs, ours = finding.gateway_says or {}, finding.local_says or {}
    names = list(dict.fromkeys([*theirs, *ours]))
    rows = format_html_join(
        "",
        '<tr{}><td>{}</td><th scope="row">{}</th><td>{}</td><td>{}</td></tr>',
        (
            (
                mark_safe(' style="background:#fff3cd"') if differs else "",
                "≠" if differs else "",
                name,
                theirs.get(name, "—"),
                ours.get(name, "—"),
            )
            for name in names
            for differs in [theirs.get(name, "—") != ours.get(name, "—")]
        ),
    )
    return format_html(
        "<table><thead><tr><th></th><th></th><th>The gateway (or the ledger) says</th>"
        "<th>Here</th></tr></thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = ("kind", "payer_name", "gateway_id", "local", "state", "ending", "last_seen")
    list_filter = ("state", "kind", "ending", PayerFilter)
    search_fields = ("payer", "gateway_id", "local", "organization__name", "user__email")
    date_hierarchy = "first_seen"
    list_select_related = ("organization", "user")
    actions = ("check_again", "resync", "explain")
    readonly_fields = (
        "kind",
        "payer",
        "organization",
        "user",
        "gateway_id",
        "local",
        "local_type",
        "local_id",
        "sides",
        "first_seen",
        "last_seen",
        "state",
        "ending",
        "ended_at",
        "ended_by",
        "note",
        "heal_error",
        "emailed_at",
    )
    fields = readonly_fields

    @admin.display(description="payer", ordering="payer")
    def payer_name(self, finding: Finding) -> str:
        if finding.organization is not None:
            return finding.organization.name
        if finding.user is not None:
            return finding.user.email
        return finding.payer

    @admin.display(description="both sides")
    def sides(self, finding: Finding) -> str:
        return _sides(finding)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)

    def _noted(
        self, request: HttpRequest, queryset: QuerySet[Finding], *, action: str, title: str
    ) -> tuple[str, bool] | HttpResponse:
        """A page asking for the note first; (note, confirmed) once it is submitted."""
        form = NoteForm(request.POST if "confirm" in request.POST else None)
        if "confirm" in request.POST and form.is_valid():
            note: str = form.cleaned_data["note"]
            if action == "explain" and not note.strip():
                form.add_error("note", "Say why the difference is right.")
            else:
                return note, True
        return TemplateResponse(
            request,
            "admin/reconciliation/finding/note.html",
            {
                **self.admin_site.each_context(request),
                "title": title,
                "findings": queryset,
                "form": form,
                "action": action,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Finding], action: str, title: str, do: Any
    ) -> HttpResponse | None:
        asked = self._noted(request, queryset.filter(state="open"), action=action, title=title)
        if not isinstance(asked, tuple):
            return asked
        note, _ = asked
        actor = request.user
        assert isinstance(actor, User)
        for finding in queryset.filter(state="open"):
            try:
                said = do(finding, actor, note)
            except GatewayError as error:
                said = f"the gateway did not answer: {error}"
            self.message_user(request, f"{finding}: {said}", messages.INFO)
        return None

    @admin.action(description="Check again (close the ones that no longer differ)")
    def check_again(self, request: HttpRequest, queryset: QuerySet[Finding]) -> Any:
        def do(finding: Finding, actor: User, note: str) -> str:
            ended = finding_check_again(finding=finding, actor=actor, note=note)
            return "no longer differs: fixed" if ended else "still differs"

        return self._each(request, queryset, "check_again", "Check these findings again", do)

    @admin.action(description="Re-sync from the gateway (where safe)")
    def resync(self, request: HttpRequest, queryset: QuerySet[Finding]) -> Any:
        def do(finding: Finding, actor: User, note: str) -> str:
            return finding_resync(finding=finding, actor=actor, note=note)

        return self._each(request, queryset, "resync", "Re-sync these from the gateway", do)

    @admin.action(description="Mark explained (with a note)")
    def explain(self, request: HttpRequest, queryset: QuerySet[Finding]) -> Any:
        def do(finding: Finding, actor: User, note: str) -> str:
            return "explained" if finding_explain(finding=finding, actor=actor, note=note) else ""

        return self._each(request, queryset, "explain", "Explain these findings", do)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(admin.ModelAdmin):
    list_display = ("started_at", "finished_at", "full", "checked", "found", "healed", "failed")
    list_filter = ("full",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
