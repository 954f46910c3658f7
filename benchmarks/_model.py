"""The vocabulary of the suite: what is measured, and the records a run produces.

Every section returns plain dataclasses from this module, so that the report, the JSON
output, the plot and the target checks read one shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["send", "send_robust", "gather", "gather_robust"]
MODES: tuple[Mode, ...] = ("send", "send_robust", "gather", "gather_robust")
CONCURRENT_MODES: frozenset[Mode] = frozenset({"gather", "gather_robust"})
ROBUST_MODES: frozenset[Mode] = frozenset({"send_robust", "gather_robust"})

Kind = Literal["sync", "async", "suspend"]
KINDS: tuple[Kind, ...] = ("sync", "async", "suspend")
KIND_TITLES: dict[Kind, str] = {
    "sync": "sync receivers",
    "async": "coroutine receivers that return at once",
    "suspend": "coroutine receivers that suspend once (the loop's own sleep(0))",
}

LoopName = Literal["asyncio", "uvloop", "trio"]
LOOPS: tuple[LoopName, ...] = ("asyncio", "uvloop", "trio")

Role = Literal["asignals", "baseline", "peer"]

Batch = Callable[[int], Awaitable[None]]
"""``await batch(k)`` performs *k* sends back to back, inside the running loop."""


@dataclass(frozen=True)
class NotApplicable:
    """An implementation that cannot run a case, and why (printed as ``n/a``)."""

    reason: str


@dataclass(frozen=True)
class Timing:
    """One implementation's timing in one case, in nanoseconds per send."""

    best_ns: float  # the minimum over the repeats: the statistic the report uses
    median_ns: float
    batch: int  # sends per timed batch
    repeats: int


@dataclass(frozen=True)
class Case:
    """One cell of the dispatch grid."""

    mode: Mode
    kind: Kind
    n: int
    loop: LoopName


@dataclass
class Setup:
    """What a case hands every implementation: the same receivers, sender and payload.

    The setup owns the receivers (strong references), so weakly connected receivers stay
    alive exactly as long as the case runs.
    """

    case: Case
    receivers: list[Callable[..., Any]]
    sender: object
    payload: dict[str, Any]
    signal: object  # what hand-written loops pass as ``signal=``


@dataclass
class DispatchRow:
    """One implementation in one case."""

    loop: LoopName
    mode: Mode
    kind: Kind
    n: int
    impl: str
    role: Role
    ns: float | None = None  # best (min) ns per send
    median_ns: float | None = None
    batch: int | None = None
    repeats: int | None = None
    baseline: str = ""  # the implementation `ratio` divides by
    ratio: float | None = None
    na: str | None = None  # reason, when the implementation cannot run this case


@dataclass
class AsgiRow:
    """One server variant under wrk."""

    loop: str
    variant: str
    description: str
    rps: float | None = None
    p50_us: float | None = None
    p99_us: float | None = None
    errors: int = 0
    runs: int = 0
    other_cores: float | None = None  # CPU other processes used during the kept run
    rps_ratio: float | None = None  # rps / bare app's rps (higher is better)
    p50_ratio: float | None = None  # p50 / bare app's p50 (lower is better)
    p99_ratio: float | None = None
    na: str | None = None


@dataclass
class InProcessRow:
    """One variant's time per request, the app called directly (no server, no sockets)."""

    loop: str
    variant: str
    description: str
    ns: float | None = None  # best (min) ns per request
    bare_ns: float | None = None  # the bare app's best, timed interleaved with this variant
    ratio: float | None = None  # vs the bare app
    overhead_ns: float | None = None  # ns - bare_ns: what the middleware adds per request
    overhead_ratio: float | None = None  # overhead / the floor middleware's overhead
    na: str | None = None


@dataclass
class OtherPython:
    """The dispatch section run by another interpreter (``--also-python``)."""

    interpreter: str  # the path it was started as
    python: str = ""  # e.g. "CPython 3.12.1", from its own run
    system: dict[str, str] = field(default_factory=dict)
    dispatch: list[DispatchRow] = field(default_factory=list)
    na: str | None = None  # why it did not run


@dataclass
class InstructionRow:
    """One operation on one Python, in instructions (callgrind): asignals and its baseline.

    Instructions per operation: the difference of two runs' totals divided by the
    difference of their operation counts (*counts*), so start-up and imports cancel. For
    the middleware both figures are above the bare app's (*subtracted*).
    """

    python: str  # e.g. "CPython 3.11.7" (the interpreter's path when it could not run)
    operation: str
    baseline: str  # the implementation `ratio` divides by
    program: str  # what the child ran: send/KIND/N/IMPLEMENTATION or asgi/VARIANT
    baseline_program: str
    counts: list[int] = field(default_factory=list)  # the two runs' numbers of operations
    instructions: float | None = None
    baseline_instructions: float | None = None
    ratio: float | None = None
    subtracted: float | None = None  # per operation, taken off both figures
    na: str | None = None


@dataclass
class FootprintRow:
    """Bytes that keeping receivers connected costs one library."""

    impl: str
    role: Role
    receivers: int
    bytes_per_receiver: float | None = None
    ratio: float | None = None  # vs the hand-written list of weak references
    connect_seconds: float | None = None  # wall time of the connects (tracemalloc on)
    na: str | None = None


@dataclass
class ChurnRow:
    """Traced memory at checkpoints through many cycles of one kind of churn."""

    name: str
    description: str
    cycles: int
    checkpoints: list[int] = field(default_factory=list)  # cycles done at each reading
    traced_bytes: list[int] = field(default_factory=list)  # relative to the first reading
    growth_bytes: int = 0  # last reading minus the first
    bytes_per_cycle: float = 0.0
    flat: bool = True
    seconds: float = 0.0


@dataclass
class TargetRow:
    """One performance target, judged."""

    name: str
    goal: str
    value: str  # the measured figure, e.g. "1.07x"
    passed: bool | None  # None: could not be judged (section skipped, case n/a)
    details: str = ""


@dataclass
class Settings:
    """How a run was configured (printed in the header and stored in the JSON)."""

    quick: bool
    sections: list[str]
    loops: list[LoopName]
    receiver_counts: list[int]
    repeats: int
    batch_target_ms: float
    statistic: str
    asgi_loops: list[str]
    asgi_seconds: float
    asgi_repeats: int
    asgi_retries: int  # extra runs for a variant whose kept run had a busy machine
    asgi_connections: int
    footprint_receivers: int
    churn_cycles: int
    peers: bool
    asgi_in_process_repeats: int = 11
    other_pythons: list[str] = field(default_factory=list)  # interpreters for dispatch
    other_loops: list[LoopName] = field(default_factory=lambda: ["asyncio"])


@dataclass
class Results:
    """Everything one run produced."""

    system: dict[str, str]
    settings: Settings
    dispatch: list[DispatchRow] = field(default_factory=list)
    dispatch_notes: list[str] = field(default_factory=list)
    asgi: list[AsgiRow] = field(default_factory=list)
    asgi_inprocess: list[InProcessRow] = field(default_factory=list)
    asgi_notes: list[str] = field(default_factory=list)
    footprint: list[FootprintRow] = field(default_factory=list)
    churn: list[ChurnRow] = field(default_factory=list)
    memory_notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # section -> reason
    other_pythons: list[OtherPython] = field(default_factory=list)
    instructions: list[InstructionRow] = field(default_factory=list)
    targets: list[TargetRow] = field(default_factory=list)


def _per_mode(mode: Mode) -> str:
    return mode


@dataclass(frozen=True)
class Implementation:
    """Something that can send to a case's receivers: asignals, a baseline or a peer.

    ``build`` connects the case's receivers (fresh signal object, the library's default
    connection mode) and returns the batch to time, or why this case cannot run.
    """

    name: str
    role: Role
    modes: frozenset[Mode]
    build: Callable[[Setup], Batch | NotApplicable]
    description: str
    # Implementations listed under several modes with the same code (Django's asend is its
    # only async send, and gathers): equal keys are measured once and listed under each.
    measure_key: Callable[[Mode], str] = _per_mode
