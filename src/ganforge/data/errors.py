"""The error every data problem is reported with."""


class DataError(RuntimeError):
    """A dataset that cannot be used; the message names the source and what to do."""
