"""The one exception netfo shows its user: a line that says what to do."""


class NetfoError(Exception):
    """A failure to report to the user as one line."""
