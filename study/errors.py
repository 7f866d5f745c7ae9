"""The one exception type for mistakes a user can fix.

The CLI turns a `UserError` into one line on stderr and exit code 2; anything else is a bug and keeps its traceback.
Raise it with a message that names the thing (an option, a key, a path) and the fix.
"""


class UserError(Exception):
    """A bad input: a config key, a value, a path, a study name. The message is the whole story, in one line."""
