"""The errors taxoclip reports to people as one line, without a traceback."""

from __future__ import annotations


class TaxoclipError(Exception):
    """A problem with the user's input or environment, reported as one line by the CLI."""


class MissingFilesError(TaxoclipError):
    """Files a model or bank needs are not on this machine and cannot be downloaded."""
