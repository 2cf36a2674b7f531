"""Errors that mean "the input or the setup is wrong", shown to people without a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad file, bad flag, missing table); the CLI prints it plainly."""
