"""The reconciler: for each payer, the gateway's books read, compared with ours, the safe
differences healed at once and every difference recorded as a finding; staff's actions on
findings.

Gateway reads happen before any transaction (reconciliation.differences.gateway_books); each
finding is written in its own short transaction; heals are the product's own services, each of
which owns its transaction. A run records what it saw (ReconciliationRun), so that the next
incremental run reads the webhook inbox from there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from billing.models import BillingProfile
from credits.models import CreditAccount
from organizations.models import Organization
from organizations.services import audit_record
from payments.factory import get_gateway
from payments.gateway import BillingGateway, GatewayError
from reconciliation import selectors
from reconciliation.differences import (
    ACCOUNT_KINDS,
    HEAL_ORDER,
    PAYER_KINDS,
    Difference,
    GatewayBooks,
    Payer,
    account_differences,
    account_payer,
    accounts_drifted,
    differences,
    gateway_books,
    payer_of_profile,
)
from reconciliation.models import Finding, ReconciliationRun

logger = logging.getLogger(__name__)

# Runs are kept this long (the recent run alone records 288 a day); findings are kept for good.
RUNS_KEPT = timedelta(days=90)

# Heal, look again, heal what the first heals uncovered (a refund of a purchase credited by the
# first pass): a few passes at most.
HEAL_PASSES = 3


@dataclass
class RunReport:
    """What one run checked and what it found or healed (`reconcile --json`)."""

    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    reads: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"checked": self.checked, "findings": [f.as_json() for f in self.findings]}

    def summary(self) -> dict[str, int]:
        states = [finding.state for finding in self.findings]
        return {
            "checked": self.checked,
            "healed": states.count(Finding.State.HEALED),
            "open": states.count(Finding.State.OPEN),
            "explained": states.count(Finding.State.EXPLAINED),
            "failed": len(self.failed),
        }


# Findings: recorded, ended


def _local_reference(difference: Difference) -> dict[str, Any]:
    target = difference.local_object
    if isinstance(target, Model) and target.pk is not None:
        return {
            "local_type": ContentType.objects.get_for_model(type(target)),
            "local_id": str(target.pk),
        }
    return {"local_type": None, "local_id": ""}


def _payer_fields(payer: str) -> dict[str, Any]:
    """The organization or person a payer label names, for the admin's links and filters."""
    if payer.startswith("user:"):
        return {"user": User.objects.filter(pk=payer.removeprefix("user:")).first()}
    if payer.startswith("account:"):
        return {}
    return {"organization": Organization.objects.filter(pk=payer).first()}


def _what(difference: Difference) -> dict[str, Any]:
    return {
        "local": difference.local[:255],
        "gateway_says": difference.gateway_says,
        "local_says": difference.local_says,
        **_local_reference(difference),
    }


def finding_open(*, payer: str, difference: Difference, heal_error: str = "") -> Finding:
    """Record a difference that stays: the open finding for its (kind, payer, gateway id),
    seen again now, or a new one. A difference staff explained, seen again exactly as it was
    explained, stays explained."""
    now = timezone.now()
    lookup = {"kind": difference.kind, "payer": payer, "gateway_id": difference.gateway_id}
    with transaction.atomic():
        finding = Finding.objects.select_for_update().filter(**lookup, state="open").first()
        if finding is None:
            explained = (
                Finding.objects.select_for_update()
                .filter(
                    **lookup,
                    state=Finding.State.EXPLAINED,
                    gateway_says=difference.gateway_says,
                    local_says=difference.local_says,
                )
                .order_by("-ended_at")
                .first()
            )
            if explained is not None:
                explained.last_seen = now
                explained.save(update_fields=["last_seen"])
                return explained
            try:
                with transaction.atomic():
                    return Finding.objects.create(
                        **lookup,
                        **_payer_fields(payer),
                        **_what(difference),
                        heal_error=heal_error or difference.why_open,
                        first_seen=now,
                        last_seen=now,
                    )
            except IntegrityError:  # another run recorded it first: theirs, seen again
                finding = Finding.objects.select_for_update().get(**lookup, state="open")
        for name, value in _what(difference).items():
            setattr(finding, name, value)
        finding.last_seen = now
        finding.heal_error = heal_error or difference.why_open
        finding.save()
    return finding


def finding_healed(*, payer: str, difference: Difference, actor: User | None = None) -> Finding:
    """Record a difference this run (or staff, `actor`) healed: its open finding ends healed,
    or a new finding is recorded as healed at once, so that staff see what was repaired."""
    now = timezone.now()
    ending = Finding.Ending.FIXED if actor is not None else Finding.Ending.HEALED
    lookup = {"kind": difference.kind, "payer": payer, "gateway_id": difference.gateway_id}
    with transaction.atomic():
        finding = Finding.objects.select_for_update().filter(**lookup, state="open").first()
        if finding is None:
            return Finding.objects.create(
                **lookup,
                **_payer_fields(payer),
                **_what(difference),
                first_seen=now,
                last_seen=now,
                state=Finding.State.HEALED,
                ending=ending,
                ended_at=now,
                ended_by=actor,
            )
        finding.last_seen = finding.ended_at = now
        finding.state, finding.ending, finding.ended_by = Finding.State.HEALED, ending, actor
        finding.heal_error = ""
        finding.save()
        if actor is not None:
            _audit(finding, actor=actor, action="reconciliation.resync")
    return finding


def _close_cleared(*, payer: str, kinds: Iterable[str], still: set[tuple[str, str]]) -> int:
    """Open findings of the payer that this check no longer sees: applied meanwhile (a late
    webhook, a staff adjustment)."""
    closed = 0
    now = timezone.now()
    for finding in Finding.objects.filter(payer=payer, state="open", kind__in=list(kinds)):
        if (finding.kind, finding.gateway_id) in still:
            continue
        closed += Finding.objects.filter(pk=finding.pk, state="open").update(
            state=Finding.State.HEALED, ending=Finding.Ending.CLEARED, ended_at=now, last_seen=now
        )
    return closed


def _dry(*, payer: str, difference: Difference) -> Finding:
    """What a dry run reports, saved nowhere: open, or explained if staff explained it so."""
    explained = Finding.objects.filter(
        kind=difference.kind,
        payer=payer,
        gateway_id=difference.gateway_id,
        state=Finding.State.EXPLAINED,
        gateway_says=difference.gateway_says,
        local_says=difference.local_says,
    ).exists()
    return Finding(
        kind=difference.kind,
        payer=payer,
        gateway_id=difference.gateway_id,
        local=difference.local[:255],
        gateway_says=difference.gateway_says,
        local_says=difference.local_says,
        state=Finding.State.EXPLAINED if explained else Finding.State.OPEN,
    )


# One payer


def _heal_all(found: Sequence[Difference], errors: dict[tuple[str, str], str]) -> bool:
    """Run every heal, in HEAL_ORDER; an error leaves that one open (with why) and the others
    go on. True when at least one heal ran."""
    ran = False
    for difference in sorted(
        (d for d in found if d.heal is not None), key=lambda d: HEAL_ORDER.index(d.kind)
    ):
        assert difference.heal is not None
        try:
            difference.heal()
        except Exception as error:  # one heal's failure must not stop the others
            logger.exception("reconciliation: healing %s %s failed", *difference.key)
            errors[difference.key] = f"The heal failed: {error}"[:2000]
        else:
            ran = True
    return ran


def payer_reconcile(
    payer: Payer, *, gateway: BillingGateway, dry_run: bool = False
) -> tuple[list[Finding], int]:
    """Check one payer: read the gateway, compare, heal what is safe (several passes: a heal
    can uncover the next), record each difference as a finding and close the payer's open
    findings that are no longer seen. Returns the findings and the gateway reads made."""
    books = gateway_books(gateway, payer)
    found = differences(payer, books)
    if dry_run:
        return [_dry(payer=payer.label, difference=d) for d in found], books.reads
    seen = {d.key: d for d in found}
    errors: dict[tuple[str, str], str] = {}
    for _ in range(HEAL_PASSES):
        if not any(d.heal is not None and d.key not in errors for d in found):
            break
        if not _heal_all([d for d in found if d.key not in errors], errors):
            break
        found = differences(payer, books)
        for difference in found:
            seen.setdefault(difference.key, difference)
    still = {d.key: d for d in found}
    findings = [
        finding_open(payer=payer.label, difference=still[key], heal_error=errors.get(key, ""))
        if key in still
        else finding_healed(payer=payer.label, difference=difference)
        for key, difference in seen.items()
    ]
    _close_cleared(payer=payer.label, kinds=PAYER_KINDS, still=set(still))
    return findings, books.reads


def accounts_reconcile(
    accounts: Iterable[CreditAccount] | None, *, dry_run: bool = False
) -> list[Finding]:
    """Balances against ledgers and held against active holds, for these accounts (None: all
    of them, in one query); findings no longer seen are closed."""
    queryset = CreditAccount.objects.all()
    if accounts is not None:
        queryset = queryset.filter(pk__in=[account.pk for account in accounts])
    findings = []
    drifted: dict[str, list[Difference]] = {}
    for account in accounts_drifted(queryset):
        drifted.setdefault(account_payer(account), []).extend(account_differences(account))
    for payer, found in drifted.items():
        for difference in found:
            findings.append(
                _dry(payer=payer, difference=difference)
                if dry_run
                else finding_open(payer=payer, difference=difference)
            )
    if not dry_run:
        checked = None if accounts is None else {account_payer(account) for account in queryset}
        for finding in Finding.objects.filter(state="open", kind__in=list(ACCOUNT_KINDS)):
            if checked is not None and finding.payer not in checked:
                continue
            still = {d.key for d in drifted.get(finding.payer, [])}
            _close_cleared(payer=finding.payer, kinds=[finding.kind], still=still)
    return findings


# Runs


def _tell_admins(findings: Iterable[Finding]) -> None:
    """Each new open finding is emailed to ADMINS once (one email per run lists them)."""
    new = [f for f in findings if f.pk and f.state == Finding.State.OPEN and f.emailed_at is None]
    if not new:
        return
    lines = [
        f"- {finding.get_kind_display()}: payer {finding.payer}, "
        f"{finding.gateway_id or '(no gateway object)'}, {finding.local}\n"
        f"  {settings.SITE_URL}{reverse('admin:reconciliation_finding_change', args=[finding.pk])}"
        for finding in new
    ]
    try:
        mail_admins(
            f"Reconciliation: {len(new)} new finding(s) need a person",
            "The gateway's books and ours differ where the reconciler may not heal them:\n\n"
            + "\n".join(lines)
            + "\n",
        )
    except Exception:  # an email that cannot go now is tried again by the next run
        logger.exception("reconciliation: could not email ADMINS")
        return
    Finding.objects.filter(pk__in=[f.pk for f in new]).update(emailed_at=timezone.now())


def reconcile(
    *,
    full: bool = False,
    organization: Organization | None = None,
    dry_run: bool = False,
    gateway: BillingGateway | None = None,
) -> RunReport:
    """One run: every payer with a gateway customer (`full`), one organization, or the payers
    with gateway activity since the last run (the webhook inbox says who). `dry_run` reads and
    compares only: nothing is healed or recorded."""
    gateway = gateway or get_gateway()
    run = ReconciliationRun(full=full and organization is None, dry_run=dry_run)
    since = selectors.last_run_started() if not full and organization is None else None
    if not dry_run:
        run.save()
    if organization is not None:
        profiles = BillingProfile.objects.filter(organization=organization).exclude(
            gateway_customer_id=""
        )
        accounts: list[CreditAccount] | None = list(
            CreditAccount.objects.filter(organization=organization)
        )
    elif full:
        profiles = selectors.payers_with_customer()
        accounts = None
    else:
        profiles = selectors.payers_with_activity(
            since=since or timezone.now() - timedelta(days=1), gateway=gateway
        )
        accounts = list(selectors.accounts_of(profiles))
    report = RunReport()
    checked: set[str] = set()
    for profile in profiles.select_related("organization", "user").order_by("pk").iterator():
        payer = payer_of_profile(profile)
        try:
            findings, reads = payer_reconcile(payer, gateway=gateway, dry_run=dry_run)
        except GatewayError as error:
            # The gateway did not answer for this payer; the next run tries again.
            logger.warning("reconciliation: could not read %s: %s", payer.label, error)
            report.failed.append(payer.label)
            continue
        checked.add(payer.label)
        report.findings.extend(findings)
        report.reads += reads
    account_findings = accounts_reconcile(accounts, dry_run=dry_run)
    report.findings.extend(account_findings)
    if accounts is None:
        checked |= set(selectors.account_payers())
    else:
        checked |= {account_payer(account) for account in accounts}
    # A payer whose gateway books could not be read is not counted as checked.
    report.checked = len(checked - set(report.failed))
    if not dry_run:
        _tell_admins(report.findings)
        if run.full:
            ReconciliationRun.objects.filter(started_at__lt=run.started_at - RUNS_KEPT).delete()
        summary = report.summary()
        run.finished_at = timezone.now()
        run.checked = report.checked
        run.found = len(report.findings)
        run.healed = summary["healed"]
        run.failed = summary["failed"]
        run.save()
    return report


# Staff's actions


def _audit(finding: Finding, *, actor: User, action: str, **details: Any) -> None:
    audit_record(
        organization=finding.organization,
        actor=actor,
        action=action,
        target=f"{finding.get_kind_display()}: {finding.gateway_id or finding.local}"[:255],
        finding=finding.pk,
        payer=finding.payer,
        **details,
    )


def _payer_of_finding(finding: Finding) -> Payer | None:
    profile = None
    if finding.payer.startswith("user:"):
        profile = BillingProfile.objects.filter(user_id=finding.payer.removeprefix("user:")).first()
    elif not finding.payer.startswith("account:"):
        profile = BillingProfile.objects.filter(organization_id=finding.payer).first()
    if profile is None or not profile.gateway_customer_id:
        return None
    return payer_of_profile(profile)


def _now_seen(finding: Finding, gateway: BillingGateway) -> tuple[Difference | None, Any]:
    """The finding's difference as it is now (None if gone), and how to look again."""
    if finding.kind in ACCOUNT_KINDS:
        account = CreditAccount.objects.filter(pk=finding.local_id).first()
        if account is None:
            return None, None
        drifted = list(accounts_drifted(CreditAccount.objects.filter(pk=account.pk)))
        found = account_differences(drifted[0]) if drifted else []
        return next((d for d in found if d.kind == finding.kind), None), None
    payer = _payer_of_finding(finding)
    if payer is None:
        return None, None
    books = gateway_books(gateway, payer)
    for difference in differences(payer, books):
        if difference.key == (finding.kind, finding.gateway_id):
            return difference, (payer, books)
    return None, (payer, books)


def finding_check_again(
    *, finding: Finding, actor: User, note: str = "", gateway: BillingGateway | None = None
) -> bool:
    """Staff look again: a finding whose difference is gone ends fixed by staff (with their
    note); one still there is seen again. True when it ended."""
    difference, _ = _now_seen(finding, gateway or get_gateway())
    now = timezone.now()
    with transaction.atomic():
        finding = Finding.objects.select_for_update().get(pk=finding.pk)
        if finding.state != Finding.State.OPEN:
            return False
        finding.last_seen = now
        if difference is not None:
            finding.gateway_says, finding.local_says = (
                difference.gateway_says,
                difference.local_says,
            )
            finding.save(update_fields=["last_seen", "gateway_says", "local_says"])
            return False
        finding.state, finding.ending = Finding.State.HEALED, Finding.Ending.FIXED
        finding.ended_at, finding.ended_by = now, actor
        finding.note = note or "No longer differs when checked again."
        finding.save()
        _audit(finding, actor=actor, action="reconciliation.check_again", note=finding.note)
    return True


def finding_resync(
    *, finding: Finding, actor: User, note: str = "", gateway: BillingGateway | None = None
) -> str:
    """Staff re-sync from the gateway: the finding's safe heal run again (after an error), then
    looked at once more. Refused for findings the reconciler may not heal. Returns what
    happened, in words."""
    gateway = gateway or get_gateway()
    if finding.state != Finding.State.OPEN:
        return "not open"
    difference, context = _now_seen(finding, gateway)
    if difference is None:
        finding_check_again(finding=finding, actor=actor, note=note, gateway=gateway)
        return "no longer differs"
    if difference.heal is None:
        return "not safe to re-sync: " + (difference.why_open or "staff must decide")
    errors: dict[tuple[str, str], str] = {}
    _heal_all([difference], errors)
    payer, books = context
    assert isinstance(books, GatewayBooks)
    after = {d.key: d for d in differences(payer, books)}
    if difference.key in after:
        finding_open(
            payer=finding.payer,
            difference=after[difference.key],
            heal_error=errors.get(difference.key, "Re-synced; it still differs."),
        )
        return "still differs"
    healed = finding_healed(payer=finding.payer, difference=difference, actor=actor)
    if note:
        Finding.objects.filter(pk=healed.pk).update(note=note)
    return "re-synced"


def finding_explain(*, finding: Finding, actor: User, note: str) -> bool:
    """Staff explain an open finding (why the difference is right): it ends explained, with
    their note, and is not reported as new while the difference stays as explained."""
    note = note.strip()
    if not note:
        raise ValueError("An explanation needs a note.")
    with transaction.atomic():
        finding = Finding.objects.select_for_update().get(pk=finding.pk)
        if finding.state != Finding.State.OPEN:
            return False
        finding.state = Finding.State.EXPLAINED
        finding.ending = Finding.Ending.EXPLAINED
        finding.ended_at, finding.ended_by, finding.note = timezone.now(), actor, note
        finding.save()
        _audit(finding, actor=actor, action="reconciliation.explain", note=note)
    return True
