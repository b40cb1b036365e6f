"""One rich console for the CLI: wide enough for tables when output is piped or logged."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 160)
