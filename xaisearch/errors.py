"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (study file, flag, config, storage URL); the message names the field or file and the fix."""
