"""What the credit rules refuse. Views turn these into messages, the API into status codes."""


class InsufficientBalance(Exception):
    pass


class DailyLimitReached(Exception):
    pass


class PurchaseDeclined(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RefundRefused(Exception):
    """Staff asked for a refund that cannot be made; `message` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownModel(Exception):
    """No list price for this provider and model: nothing can be charged for it."""

    def __init__(self, *, provider: str, model: str) -> None:
        super().__init__(f"No price for {provider}/{model}.")
        self.message = f"No price for {provider}/{model}."


class SpendRefused(Exception):
    """This person may not spend this organization's credits now."""

    message = ""


class NotASpender(SpendRefused):
    message = "Billing managers do not spend credits."


class OrganizationSuspended(SpendRefused):
    message = (
        "The organization is suspended for non-payment; an owner or billing manager can restore "
        "it by paying the open invoice."
    )


class NoSeat(SpendRefused):
    message = "You have no seat in this organization."


class LedgerKeyConflict(Exception):
    """A ledger key already names a different operation in its namespace. Logged as an error:
    it means a bug or an attack, never "already done"."""

    def __init__(self, *, source: str, key: str) -> None:
        super().__init__(f"ledger key {source}/{key} names another operation")
        self.source, self.key = source, key


class RequestIdConflict(Exception):
    """The client sent a request_id it already used for a different request."""

    def __init__(self, *, request_id: str) -> None:
        super().__init__(request_id)
        self.message = (
            f"request_id {request_id!r} was already used for a different request; "
            "use a new request_id for each model request."
        )


class AutoTopupRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GrantRefused(Exception):
    """A staff grant or adjustment the rules refuse; the message says why, for staff."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StaleContext(Exception):
    """What the caller checked before the debit (role, seat, suspension, price) changed since
    it was read: read it again and retry."""


class TokenRevoked(Exception):
    """The API token was revoked, or its user deactivated, since the caller read it."""


class MemberBudgetExceeded(Exception):
    """The member's monthly budget in this organization would be passed."""


class TokenBudgetExceeded(Exception):
    """The API token's monthly cap would be passed."""


class HoldNotFound(Exception):
    """No such hold of this caller's profile."""


class HoldEnded(Exception):
    """The hold was settled, released or expired already: `state` says which."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state
