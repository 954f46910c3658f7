"""The public API: ``__all__`` lists exactly what the package defines, under its own name."""

from __future__ import annotations

import inspect
import subprocess
import sys
from types import ModuleType

import pytest

import asignals
import asignals._builtins
import asignals.redis
import asignals.sqlalchemy
import asignals.testing
from asignals import AsyncSignal


def public_names(module: ModuleType) -> set[str]:
    """Public attributes that are not submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }


def defined_names(module: ModuleType) -> set[str]:
    """Public attributes defined in (not merely imported into) *module*."""
    return {
        name
        for name in public_names(module)
        if getattr(getattr(module, name), "__module__", module.__name__) == module.__name__
        or isinstance(getattr(module, name), AsyncSignal)
    }


@pytest.mark.parametrize(
    "module",
    [asignals, asignals.testing, asignals.redis, asignals.sqlalchemy],
    ids=lambda m: m.__name__,
)
def test_all_is_sorted_unique_and_complete(module: ModuleType) -> None:
    exported: list[str] = list(module.__all__)
    assert exported == sorted(exported)
    assert len(exported) == len(set(exported))
    for name in exported:
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name!r}"
    missing = defined_names(module) - set(exported)
    assert not missing, f"public names missing from {module.__name__}.__all__: {missing}"


def test_package_exposes_nothing_public_beyond_all() -> None:
    # The package itself only re-exports: every public non-module attribute is in __all__.
    assert public_names(asignals) == set(asignals.__all__)


CORE_API = {
    "AsyncSignal",
    "autodiscover",
    "got_request_exception",
    "receiver",
    "request_finished",
    "request_started",
}


def test_all_contains_the_documented_api() -> None:
    assert set(asignals.__all__) >= CORE_API
    assert asignals.testing.__all__ == ["Capture", "Sent", "capture", "connected_to", "muted"]


def test_every_builtin_signal_is_exported() -> None:
    builtins = {
        name for name, value in vars(asignals._builtins).items() if isinstance(value, AsyncSignal)
    }
    assert {"got_request_exception", "request_finished", "request_started"} <= builtins
    assert builtins <= set(asignals.__all__)
    for name in builtins:
        assert getattr(asignals, name) is getattr(asignals._builtins, name)


@pytest.mark.parametrize("name", ["AsyncSignal", "SignalStatistics", "autodiscover", "receiver"])
def test_reexported_objects_report_the_package_as_module(name: str) -> None:
    assert getattr(asignals, name).__module__ == "asignals"


@pytest.mark.parametrize("name", asignals.testing.__all__)
def test_testing_objects_report_their_module(name: str) -> None:
    assert getattr(asignals.testing, name).__module__ == "asignals.testing"


BUILTIN_SIGNALS = [
    name for name in asignals.__all__ if isinstance(getattr(asignals, name), AsyncSignal)
]


@pytest.mark.parametrize("name", BUILTIN_SIGNALS)
def test_builtin_signals(name: str) -> None:
    sig = getattr(asignals, name)
    assert isinstance(sig, AsyncSignal)
    assert sig.name == name
    assert repr(sig) == f"<AsyncSignal {name!r}>"
    assert sig.__doc__
    assert sig.max_concurrency is None


def test_builtin_signals_are_distinct() -> None:
    assert {"got_request_exception", "request_finished", "request_started"} <= set(BUILTIN_SIGNALS)
    assert len({id(getattr(asignals, name)) for name in BUILTIN_SIGNALS}) == len(BUILTIN_SIGNALS)


def test_sqlalchemy_module_exports_the_model_signals() -> None:
    signals = {"m2m_changed", "post_delete", "post_init", "post_save", "pre_delete", "pre_init"}
    signals |= {"post_bulk_insert", "post_bulk_update", "post_bulk_delete"}
    outbox = {"Outbox", "OutboxDeadLetter", "OutboxStatistics"}
    assert asignals.sqlalchemy.__all__ == sorted(
        {*signals, *outbox, "pre_save", "track", "untrack"}
    )
    for name in {*signals, "pre_save"}:
        signal = getattr(asignals.sqlalchemy, name)
        assert isinstance(signal, AsyncSignal)
        assert signal.name == name
        assert signal.__doc__
    for name in ("track", "untrack", *outbox):
        assert getattr(asignals.sqlalchemy, name).__module__ == "asignals.sqlalchemy"


def test_deliveries_are_core_api_and_the_bridge_re_exports_them() -> None:
    assert asignals.Delivery.__module__ == "asignals"
    assert asignals.redis.Delivery is asignals.Delivery
    assert asignals.redis.current_delivery is asignals.current_delivery


def test_a_missing_extra_names_the_distribution_and_the_extra() -> None:
    from asignals._extras import missing

    error = missing("asignals.redis", "redis-py", "redis", ImportError("No module 'redis'"))
    assert isinstance(error, ImportError)
    assert str(error) == (
        'asignals.redis needs redis-py: pip install "asignals-dispatch[redis]" '
        "(No module 'redis')"
    )


def test_importing_asignals_redis_without_redis_py_names_the_extra() -> None:
    # In a process of its own, where redis-py cannot be imported.
    code = "import sys; sys.modules['redis'] = None; import asignals.redis"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert 'asignals.redis needs redis-py: pip install "asignals-dispatch[redis]"' in done.stderr


@pytest.mark.parametrize("name", asignals.redis.__all__)
def test_redis_objects_report_the_package_as_module(name: str) -> None:
    value = getattr(asignals.redis, name)
    if name in ("Delivery", "current_delivery"):  # the core's, re-exported
        assert value.__module__ == "asignals"
    elif not isinstance(value, AsyncSignal):  # a signal instance has no module of its own
        assert value.__module__ == "asignals.redis"
