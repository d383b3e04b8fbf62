class CurrencyMismatch(Exception):
    """The payer already pays in another currency; `message` says which."""

    def __init__(self, *, current: str, asked: str) -> None:
        self.message = (
            f"This account pays in {current.upper()}; it cannot also be charged in "
            f"{asked.upper()}. Choose a plan priced in {current.upper()}, or contact us."
        )
        super().__init__(self.message)
        self.current, self.asked = current, asked
