"""Signals for async Python: connect receivers, ``await signal.send(sender, **payload)``."""

from ._autodiscover import autodiscover as autodiscover
from ._builtins import app_started as app_started
from ._builtins import app_stopping as app_stopping
from ._builtins import got_request_exception as got_request_exception
from ._builtins import request_finished as request_finished
from ._builtins import request_started as request_started
from ._delivery import Delivery as Delivery
from ._delivery import current_delivery as current_delivery
from ._signal import AsyncSignal as AsyncSignal
from ._signal import SignalStatistics as SignalStatistics
from ._signal import receiver as receiver
from ._typed import TypedSignal as TypedSignal
from ._typed import signal as signal

__all__ = [
    "AsyncSignal",
    "Delivery",
    "SignalStatistics",
    "TypedSignal",
    "app_started",
    "app_stopping",
    "autodiscover",
    "current_delivery",
    "got_request_exception",
    "receiver",
    "request_finished",
    "request_started",
    "signal",
]

# Show users `asignals.AsyncSignal`, not the private module it is defined in.
for _name in (
    "AsyncSignal",
    "Delivery",
    "SignalStatistics",
    "TypedSignal",
    "autodiscover",
    "current_delivery",
    "receiver",
    "signal",
):
    globals()[_name].__module__ = __name__
del _name
