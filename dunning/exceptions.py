class LifecycleError(Exception):
    """A lifecycle move the rules refuse; the message says why, in words staff can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
