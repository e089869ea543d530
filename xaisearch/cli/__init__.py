"""The ``xaisearch`` command line: typer commands and all terminal rendering."""

from xaisearch.cli.app import app, entry_point, main

__all__ = ["app", "entry_point", "main"]
