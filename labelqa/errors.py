"""The one user-facing error type.

Anything the user can fix (a missing file, a wrong column, bad probabilities)
raises :class:`LabelqaError`. The CLI turns it into a single line on stderr and
exit code 2; library users catch it like any other exception.
"""

from __future__ import annotations


class LabelqaError(ValueError):
    """A problem with the user's input or options.

    Args:
        message: What is wrong, and where (file, column, row when known).
        hint: How to fix it, appended to the message after " -- ".
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} -- {hint}" if hint else message)
