"""Rules that apps above organizations add to team changes, so that organizations never imports
them: seats registers "an owner, admin or member needs an empty seat" (seats/apps.py)."""

from typing import Protocol
from uuid import UUID


class TeamRule(Protocol):
    def __call__(self, *, organization_id: UUID, role: str, invitation_id: int | None) -> None:
        """Refuse (raise a TeamRuleError) to give someone `role`; `invitation_id` is the pending
        invitation being accepted or just created, which already counts as that person."""


_rules: list[TeamRule] = []


def team_rule_register(rule: TeamRule) -> None:
    if rule not in _rules:
        _rules.append(rule)


def team_rules_check(*, organization_id: UUID, role: str, invitation_id: int | None = None) -> None:
    """Apply every registered rule, inside the caller's transaction (a rule may lock rows)."""
    for rule in _rules:
        rule(organization_id=organization_id, role=role, invitation_id=invitation_id)
