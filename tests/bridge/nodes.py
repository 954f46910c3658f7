"""Start ``node.py`` processes and read their events (bounded waits only)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

NODE = Path(__file__).with_name("node.py")
WAIT = 30.0  # generous: the machine is shared


class Node:
    """One node.py process; its stdout events land in ``events`` as they come."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(NODE), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._new: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            self.events.append(event)
            self._new.put(event)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr += line

    def wait_for(self, kind: str, timeout: float = WAIT, **match: Any) -> dict[str, Any]:
        """The first event of *kind* (matching *match*) not yet taken, waiting for it."""
        deadline = time.monotonic() + timeout
        for event in self.events:
            if self._matches(event, kind, match):
                return event
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self.process.poll() is not None and self._new.empty()):
                raise AssertionError(
                    f"no {kind!r} event {match} within {timeout} s; events: {self.events}; "
                    f"exit: {self.process.poll()}; stderr: {self.stderr[-3000:]}"
                )
            try:
                event = self._new.get(timeout=min(remaining, 0.2))
            except queue.Empty:
                continue
            if self._matches(event, kind, match):
                return event

    @staticmethod
    def _matches(event: dict[str, Any], kind: str, match: dict[str, Any]) -> bool:
        """Whether *event* is the one asked for and not taken yet (then it is taken)."""
        if event["event"] != kind or event.get("_taken"):
            return False
        if not all(event.get(key) == value for key, value in match.items()):
            return False
        event["_taken"] = True
        return True

    def got(self, signal_name: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["event"] == "got" and (signal_name is None or e["signal"] == signal_name)
        ]

    def command(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=WAIT)
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.close()
                self.process.wait(timeout=WAIT)
            except (subprocess.TimeoutExpired, BrokenPipeError):  # pragma: no cover
                self.process.kill()
                self.process.wait(timeout=WAIT)
        self._reader.join(timeout=WAIT)
        self._errors.join(timeout=WAIT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def nodes(*configs: dict[str, Any]) -> Iterator[list[Node]]:
    """Start one node per config, wait until every one is ready, close them all after."""
    started = [Node(config) for config in configs]
    try:
        for node in started:
            node.wait_for("ready")
        yield started
    finally:
        for node in started:
            node.close()


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)
