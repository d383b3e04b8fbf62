class NothingToPay(Exception):
    """ "Pay now" with no overdue invoice."""
