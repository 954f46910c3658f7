"""What the integration modules say when their optional dependency is missing."""

from __future__ import annotations

from typing import Final

DISTRIBUTION: Final = "asignals-dispatch"
"""The name this project is installed under (``asignals`` on the index is another one)."""


def missing(module: str, needs: str, extra: str, cause: ImportError) -> ImportError:
    """The error an integration module raises when its extra is not installed."""
    return ImportError(f'{module} needs {needs}: pip install "{DISTRIBUTION}[{extra}]" ({cause})')
