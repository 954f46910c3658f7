"""The instruments: made once per `instrument()`, from the meter provider given to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .. import _trace

# Sends and message handling take microseconds to seconds: boundaries for that range
# (the SDK's default ones start at 5, meant for milliseconds).
_SECONDS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]


class Metrics:
    """The histograms and counters asignals records to."""

    def __init__(self, meter: Meter) -> None:
        self.send_duration = meter.create_histogram(
            "asignals.send.duration",
            unit="s",
            description="How long a send took, all its receivers included.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        self.receiver_errors = meter.create_counter(
            "asignals.receiver.errors",
            unit="{error}",
            description="Exceptions raised by receivers (raised or caught by robust sends).",
        )
        self.sent_messages = meter.create_counter(
            "messaging.client.sent.messages",
            unit="{message}",
            description="Messages a bridge published or enqueued.",
        )
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="How long running one message from the bridge took.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )
        # Read when collected, from what each outbox's relay measured at its last round.
        meter.create_observable_gauge(
            "asignals.outbox.pending",
            callbacks=[_observe("asignals.outbox.pending")],
            unit="{row}",
            description="Outbox rows waiting for delivery (dead ones excluded).",
        )
        meter.create_observable_gauge(
            "asignals.outbox.lag",
            callbacks=[_observe("asignals.outbox.lag")],
            unit="s",
            description="Age of the oldest outbox row waiting for delivery.",
        )


def _observe(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, dict(attributes)) for value, attributes in _trace.readings(name)]

    return observe
