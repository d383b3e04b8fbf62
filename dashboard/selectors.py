"""What the dashboard's composed pages read: the Overview (the home of billing) and the personal
profile. Each gathers other apps' selectors into one plain structure, in a fixed number of
queries whatever the number of members, invoices or usage rows, and never asks the gateway (the
Overview must open fast and also when the payment provider is down)."""

from dataclasses import dataclass, field
from datetime import date, datetime
from uuid import UUID

from django.db.models import QuerySet

from accounts.models import User
from analytics.selectors import SpendPace, spend_pace, spend_total
from credits.models import ApiToken, CreditAccount, LedgerEntry
from credits.selectors import BudgetUse, budget_use, budget_uses
from dunning.models import FormerBillingContact, LifecycleTransition
from invoices.models import Invoice
from invoices.selectors import invoices_of_organization, invoices_of_person, overdue_invoices
from organizations.models import Membership, Organization
from organizations.roles import Permission, allows
from organizations.selectors import memberships_of_user
from seats.selectors import Occupancy, member_has_seat, seat_occupancy

LAST_INVOICES = 5


def _account(
    *, organization: Organization | None = None, user: User | None = None
) -> CreditAccount | None:
    """The credit account, without creating one on a read."""
    if organization is not None:
        return CreditAccount.objects.filter(organization=organization).first()
    return CreditAccount.objects.filter(user=user).first()


@dataclass(frozen=True)
class Step:
    """One step of a new organization's checklist."""

    title: str
    done: bool
    url_name: str
    action: str


@dataclass(frozen=True)
class MemberSide:
    """What concerns the viewer as someone who spends the organization's credits."""

    spent_this_month: int  # microdollars
    spent_today: int
    daily_limit: int | None  # microdollars; None: no limit
    has_seat: bool
    month_start: date
    budget: BudgetUse | None = None


@dataclass
class Overview:
    membership: Membership
    today: date
    # Billing (owners, admins, billing managers); None for members.
    account: CreditAccount | None = None
    pace: SpendPace | None = None
    occupancy: Occupancy | None = None
    last_invoices: list[Invoice] = field(default_factory=list)
    overdue: list[Invoice] = field(default_factory=list)
    checklist: list[Step] = field(default_factory=list)
    # Members at 80 % or more of their monthly budget (owners and admins see who).
    budgets_near: list[BudgetUse] = field(default_factory=list)
    # The viewer's own spending (roles that spend: owners, admins, members).
    mine: MemberSide | None = None

    @property
    def organization(self) -> Organization:
        return self.membership.organization

    @property
    def balance(self) -> int:
        return self.account.balance if self.account else 0

    @property
    def runs_out_on(self) -> date | None:
        return self.pace.runs_out_on(self.balance) if self.pace else None

    @property
    def lasts_for_years(self) -> bool:
        """Spending, but so slowly that the balance lasts beyond any date worth showing."""
        days = self.pace.days_left(self.balance) if self.pace else None
        return days is not None and self.runs_out_on is None

    @property
    def people(self) -> int:
        """Members and open invitations."""
        if self.occupancy is None:
            return 0
        return len(self.occupancy.holders) + len(self.occupancy.without_seat)

    @property
    def overdue_total(self) -> int:
        return sum(invoice.amount_remaining for invoice in self.overdue)

    @property
    def is_new(self) -> bool:
        """The organization still lacks seats, a team or credits: the page leads with the
        checklist (the viewer's own token alone does not keep it there)."""
        return any(not step.done for step in self.checklist if step.url_name.startswith("org_"))


def _checklist(
    *, membership: Membership, occupancy: Occupancy, account: CreditAccount | None, user: User
) -> list[Step]:
    people = len(occupancy.holders) + len(occupancy.without_seat)
    credited = (
        account is not None and LedgerEntry.objects.filter(account=account, amount__gt=0).exists()
    )
    steps = [
        Step(
            "Buy seats for the people who use Kilo Code",
            occupancy.subscription is not None,
            "org_seats",
            "Buy seats",
        ),
        Step("Invite the team", people > 1, "org_members", "Invite people"),
        Step(
            "Buy credits for the team to spend",
            credited,
            "org_credits",
            "Buy credits",
        ),
    ]
    # A token spends the organization's credits: not a step for a billing manager, who cannot.
    if allows(membership.role, Permission.SPEND_CREDITS):
        steps.append(
            Step(
                "Create an API token for the extension",
                ApiToken.objects.filter(user=user, revoked_at__isnull=True).exists(),
                "personal_tokens",
                "Create a token",
            )
        )
    return steps


def organization_overview(*, membership: Membership, user: User, today: date) -> Overview:
    """Everything the Overview shows this member, by role: the billing summary for those who
    manage billing, their own spending for those who spend."""
    organization = membership.organization
    overview = Overview(membership=membership, today=today)
    account = _account(organization=organization)
    if allows(membership.role, Permission.MANAGE_BILLING):
        occupancy = seat_occupancy(organization=organization)
        overview.account = account
        overview.pace = spend_pace(account_id=account.pk if account else None, today=today)
        overview.occupancy = occupancy
        overview.last_invoices = list(
            invoices_of_organization(organization=organization)[:LAST_INVOICES]
        )
        overview.overdue = list(overdue_invoices(organization=organization))
        if account and allows(membership.role, Permission.MANAGE_SETTINGS):
            uses = budget_uses(account=account, month=today.replace(day=1))
            overview.budgets_near = [use for use in uses if use.near]
        overview.checklist = _checklist(
            membership=membership, occupancy=occupancy, account=account, user=user
        )
    if allows(membership.role, Permission.SPEND_CREDITS):
        account_id = account.pk if account else None
        month_start = today.replace(day=1)
        overview.mine = MemberSide(
            spent_this_month=spend_total(
                account_id=account_id, start=month_start, end=today, user_id=user.pk
            ),
            spent_today=spend_total(account_id=account_id, start=today, end=today, user_id=user.pk)
            if account and account.member_daily_limit is not None
            else 0,
            daily_limit=account.member_daily_limit if account else None,
            has_seat=member_has_seat(membership=membership),
            month_start=month_start,
            budget=budget_use(account=account, user_id=user.pk, month=month_start)
            if account
            else None,
        )
    return overview


# The personal profile


@dataclass(frozen=True)
class ClosedOrganization:
    organization: Organization
    role: str
    closing: LifecycleTransition | None

    @property
    def closed_at(self) -> datetime | None:
        return self.organization.deleted_at


def closed_organizations(*, user: User) -> list[ClosedOrganization]:
    """Organizations closed while the user was one of their owners or billing managers, newest
    first, each with the move that closed it. Two queries."""
    contacts = list(
        FormerBillingContact.objects.filter(
            user=user, organization__billing_state=Organization.BillingState.DELETED
        )
        .select_related("organization")
        .order_by("-organization__deleted_at", "organization__name")
    )
    closings: dict[UUID, LifecycleTransition] = {}
    for transition in LifecycleTransition.objects.filter(
        organization_id__in=[contact.organization_id for contact in contacts],
        to_state=Organization.BillingState.DELETED,
    ).order_by("created_at", "pk"):
        closings[transition.organization_id] = transition
    return [
        ClosedOrganization(
            organization=contact.organization,
            role=contact.get_role_display(),
            closing=closings.get(contact.organization_id),
        )
        for contact in contacts
    ]


def closed_organization(*, user: User, organization_id: UUID) -> ClosedOrganization | None:
    """One closed organization the user may read, or None (not closed, never theirs)."""
    contact = (
        FormerBillingContact.objects.filter(
            user=user,
            organization_id=organization_id,
            organization__billing_state=Organization.BillingState.DELETED,
        )
        .select_related("organization")
        .first()
    )
    if contact is None:
        return None
    closing = (
        LifecycleTransition.objects.filter(
            organization_id=contact.organization_id, to_state=Organization.BillingState.DELETED
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    return ClosedOrganization(
        organization=contact.organization, role=contact.get_role_display(), closing=closing
    )


@dataclass
class PersonalProfile:
    memberships: list[Membership]
    account: CreditAccount | None
    invoices: list[Invoice]
    closed: list[ClosedOrganization]

    @property
    def balance(self) -> int:
        return self.account.balance if self.account else 0


def personal_profile(*, user: User) -> PersonalProfile:
    return PersonalProfile(
        memberships=list(memberships_of_user(user=user)),
        account=_account(user=user),
        invoices=list(invoices_of_person(user=user)[:LAST_INVOICES]),
        closed=closed_organizations(user=user),
    )


def person_invoices(*, user: User) -> QuerySet[Invoice]:
    return invoices_of_person(user=user)
