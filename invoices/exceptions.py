class NothingToPay(Exception):
    """ "Pay now" with no overdue invoice."""


class PayNowBusy(Exception):
    """Another "pay now" of the same organization is being charged right now."""
