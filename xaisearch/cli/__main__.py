"""``python -m xaisearch.cli``: how the launcher starts worker processes."""

from xaisearch.cli.app import entry_point

entry_point()
