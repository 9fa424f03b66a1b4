class CustomerError(Exception):
    """A refused customer operation; `code` is stable for API clients."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
