"""The one error type the CLI turns into a single line and exit code 2."""


class ImagebakeError(Exception):
    """A problem the user can act on; its message is one line."""

    exit_code = 2
