"""The one exception type for mistakes in what a user gave simqos.

A :class:`SimqosError` is a user's mistake (a wrong option, a missing or corrupt file, levels
that are not nested), never a bug: the command line prints its message on one line and exits
with status 2, without a traceback. Messages name the thing, the value, the rule and the fix.
"""

__all__ = ["SimqosError"]


class SimqosError(Exception):
    """A mistake in the user's input; the message says what, which value, and how to fix it."""
