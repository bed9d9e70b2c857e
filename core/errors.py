"""The one base class for errors a user can fix: bad input, a missing file, a refused setting.

Pages show a `UserError` as a message (pages.common) and the CLI prints it and exits 2 (core.__main__); anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can act on; its message is shown as it is, so write it for them."""
