"""Argument checks shared by the core and the integrations: one copy of each, one wording.

*what* names the argument as the caller's error should, e.g. ``"RedisBridge(): batch"``
or ``"<AsyncSignal 'order_paid'>.connect(): timeout"``.
"""

from __future__ import annotations

import math
from typing import Any


def check_seconds(what: str, value: Any) -> None:
    """Raise unless *value* is a positive, finite number of seconds a timer can take.

    Raises:
        TypeError: Not an int or a float (``bool`` included, which is an int).
        ValueError: Zero, negative, NaN, infinite, or an int too large for a float.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    try:
        usable = value > 0 and math.isfinite(value)
    except OverflowError:  # an int too large for a float: no timer can take it
        usable = False
    if not usable:
        raise ValueError(f"{what} must be a positive, finite number of seconds, got {value!r}")


def check_count(what: str, value: Any) -> None:
    """Raise unless *value* is an int of at least 1.

    Raises:
        TypeError: Not an int (``bool`` included).
        ValueError: Less than 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value!r}")
