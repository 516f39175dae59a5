"""The command line: parse arguments, call the library, print. No logic of its own."""

from rbft.cli.main import app

__all__ = ["app"]
