"""The one base class for errors a user can act on. The CLI turns these into a one-line message and exit 2."""


class StylelabError(Exception):
    """Bad input, settings, weights or device; `str(err)` is a complete one-line message."""
