"""Errors that reach the user: each names what is at fault and how to fix it."""

from __future__ import annotations


class OodbenchError(Exception):
    """An error with a message for the user and, where one exists, the fix.

    The CLI prints ``str(error)`` without a traceback, so the message must name the file,
    dataset or value at fault.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}\n  fix: {fix}")


class DataError(OodbenchError):
    """A dataset file is missing, corrupt, or does not match its checksum."""


class ConfigError(OodbenchError):
    """A command-line value, preset or parameter is invalid."""


class UnknownNameError(ConfigError):
    """A method, dataset or backbone name is not registered."""
