class TeamRuleError(Exception):
    """A team change the rules refuse; the message says why, in words a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SeatRequired(TeamRuleError):
    """The change needs an empty seat and there is none: the page offers to add seats."""


class InvitationUnusable(Exception):
    """An invitation link that cannot be accepted. `reason` picks the page the visitor sees."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RowBusy(TeamRuleError):
    """A row this change must lock is held by another change for longer than a person should
    wait (organizations.locks): nothing was changed; trying again in a moment works."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "Someone else is changing this organization's seats or team right now; nothing "
            "was changed. Try again in a moment."
        )
