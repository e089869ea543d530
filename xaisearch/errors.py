"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad input (study file, flag, config, storage URL); the message names the field or file and the fix."""


class Interrupted(BaseException):
    """Ctrl-C stopped a command after it made its state resumable (the interrupted trial enqueued
    again, files written whole). A ``BaseException`` like ``KeyboardInterrupt``, so no ``except
    Exception`` swallows it, but not one, so the CLI, not click, says how to resume."""
