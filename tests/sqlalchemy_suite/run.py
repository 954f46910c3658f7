"""Run SQLAlchemy's own ORM tests with and without asignals' tracking, and compare.

``make test-sqlalchemy-suite`` runs this with the development virtualenv's Python: it
downloads the sdist of the SQLAlchemy version installed there (the sdist ships ``test/``),
runs ``test/orm`` and ``test/ext/asyncio`` on SQLite once plainly and once with
``asignals_tracking`` (``track()`` and a receiver on every model signal), and fails if a
test fails with tracking that passes without it, apart from the tests set aside below.

    python tests/sqlalchemy_suite/run.py [--workdir DIR] [pytest arguments...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import urllib.request
import xml.etree.ElementTree as ElementTree
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITES = ["test/orm", "test/ext/asyncio"]

SET_ASIDE = {
    # They call event dispatchers with dummy arguments (Session.dispatch.before_flush(),
    # class_manager.dispatch.load(5)), which fails under any global listener of that event.
    "test/orm/test_events.py::SessionEventsTest::test_on_bulk_update_hook",
    "test/orm/test_events.py::SessionEventsTest::test_on_bulk_delete_hook",
    "test/orm/test_events.py::MapperEventsTest::test_init_allow_kw_modify",
    # They compare the exact arguments of Session.get_bind(): a do_orm_execute listener that
    # runs the statement itself (ORMExecuteState.invoke_statement(), as the bulk signals'
    # does, to see its result) makes SQLAlchemy add _sa_skip_events=True to them.
    "test/orm/test_bind.py::BindIntegrationTest::test_bind_through_execute[<lambda>-<lambda>-e1_6]",
    "test/orm/test_bind.py::BindIntegrationTest::test_bind_through_execute[<lambda>-<lambda>-e1_7]",
}
"""Tests that fail under any global listener of their event, whatever it does: not
counted (the first three are from the issue that asked for this run; they pass here)."""

BY_DESIGN = {
    # They count the SELECTs that load server-generated columns after the commit; with a
    # post_save receiver those columns are loaded at the commit, for the receiver to read.
    "test/orm/test_unitofwork.py::DefaultTest::test_insert[not_eager_defaults]",
}
"""Tests that observe what a receiver is promised (columns loaded for it): not counted."""


def sdist(release: str, workdir: Path) -> Path:
    """The unpacked sdist of SQLAlchemy *release*, downloaded from PyPI once."""
    unpacked = workdir / f"sqlalchemy-{release}"
    if (unpacked / "test").is_dir():
        return unpacked
    workdir.mkdir(parents=True, exist_ok=True)
    # The package index's simple API (PEP 691, JSON): the release's files.
    request = urllib.request.Request(
        "https://pypi.org/simple/sqlalchemy/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        files = json.load(answer)["files"]
    [url] = [f["url"] for f in files if f["filename"] == f"sqlalchemy-{release}.tar.gz"]
    archive = workdir / url.rsplit("/", 1)[1]
    urllib.request.urlretrieve(url, archive)
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    [found] = [p for p in workdir.iterdir() if p.is_dir() and p.name.lower() == unpacked.name]
    return found


def run(source: Path, report: Path, tracked: bool, extra: list[str]) -> dict[str, str]:
    """Run the suites; each test id and its outcome (passed, failed, skipped)."""
    command = [sys.executable, "-m", "pytest", *SUITES, "-q", "-p", "no:cacheprovider"]
    command += ["--junitxml", str(report), *extra]
    environment = dict(os.environ)
    if tracked:
        command += ["-p", "asignals_tracking"]
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(HERE), environment.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
    print("==", "tracked" if tracked else "plain", ":", " ".join(command), flush=True)
    subprocess.run(command, cwd=source, env=environment, check=False)
    return outcomes(report)


def outcomes(report: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        path = case.get("classname", "").replace(".", "/")
        module, _, cls = path.rpartition("/")
        name = f"{module}.py::{cls}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            found[name] = "failed"
        elif case.find("skipped") is not None:
            found[name] = "skipped"
        else:
            found[name] = "passed"
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(".sqlalchemy-suite"))
    options, extra = parser.parse_known_args()
    release = version("sqlalchemy")
    source = sdist(release, options.workdir.resolve())
    plain = run(source, options.workdir.resolve() / "plain.xml", False, extra)
    tracked = run(source, options.workdir.resolve() / "tracked.xml", True, extra)
    broken = sorted(
        name
        for name, outcome in tracked.items()
        if outcome == "failed" and plain.get(name) == "passed" and name not in SET_ASIDE | BY_DESIGN
    )
    aside = sorted(n for n in SET_ASIDE | BY_DESIGN if tracked.get(n) == "failed")
    passed = sum(outcome == "passed" for outcome in tracked.values())
    print(f"SQLAlchemy {release}: {len(plain)} tests; with tracking {passed} passed")
    print(
        f"set aside (any global listener fails them, or columns loaded for receivers): {len(aside)}"
    )
    for name in aside:
        print("   ", name)
    print(f"failing with tracking only: {len(broken)}")
    for name in broken:
        print("   ", name)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
