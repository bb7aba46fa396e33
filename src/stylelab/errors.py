"""The one base class for errors a user can act on. The CLI turns these into a one-line message and exit 2."""

__all__ = ["StylelabError"]


class StylelabError(Exception):
    """Bad input, settings, weights or device; `str(err)` is a complete one-line message."""

    exit_code = 2  # the command line's exit status: 2 bad input or settings, 1 a run that failed
