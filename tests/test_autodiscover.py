"""autodiscover(): import each package's ``signals`` module once.

Uses the real packages in tests/discover_pkgs/.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asignals import autodiscover

PACKAGES = Path(__file__).parent / "discover_pkgs"
NAMES = {"asig_shop", "asig_billing", "asig_broken", "asig_plain", "asig_runs"}


def forget_packages() -> None:
    for name in list(sys.modules):
        if name.partition(".")[0] in NAMES:
            del sys.modules[name]


@pytest.fixture
def packages(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the test packages importable, each test starting from a fresh import."""
    monkeypatch.syspath_prepend(str(PACKAGES))
    forget_packages()
    yield PACKAGES
    forget_packages()


@pytest.mark.usefixtures("packages")
def test_imports_the_signals_module_and_connects_its_receivers() -> None:
    import asig_shop

    assert asig_shop.signals_imports == 0
    assert not asig_shop.order_paid.has_listeners()

    found = autodiscover("asig_shop")

    import asig_shop.signals

    assert found == [asig_shop.signals]
    assert asig_shop.signals_imports == 1
    assert asig_shop.order_paid.receivers_for() == [asig_shop.signals.on_order_paid]


@pytest.mark.usefixtures("packages")
def test_is_idempotent() -> None:
    first = autodiscover("asig_shop")
    second = autodiscover("asig_shop", "asig_shop")

    import asig_shop

    assert asig_shop.signals_imports == 1  # never executed twice
    assert second == first * 2
    assert len(asig_shop.order_paid.receivers_for()) == 1


@pytest.mark.usefixtures("packages")
def test_skips_packages_without_the_module() -> None:
    found = autodiscover("asig_billing", "asig_shop")
    assert [m.__name__ for m in found] == ["asig_shop.signals"]
    assert "asig_billing" in sys.modules
    assert "asig_billing.signals" not in sys.modules
    assert autodiscover("asig_billing") == []


@pytest.mark.usefixtures("packages")
def test_accepts_module_objects() -> None:
    package = importlib.import_module("asig_shop")
    found = autodiscover(package)
    assert [m.__name__ for m in found] == ["asig_shop.signals"]


@pytest.mark.usefixtures("packages")
def test_other_module_name() -> None:
    found = autodiscover("asig_shop", "asig_billing", module="receivers")

    import asig_shop

    assert [m.__name__ for m in found] == ["asig_shop.receivers"]
    assert asig_shop.receivers_imports == 1
    assert asig_shop.signals_imports == 0


@pytest.mark.usefixtures("packages")
def test_no_packages() -> None:
    assert autodiscover() == []


@pytest.mark.usefixtures("packages")
def test_nonexistent_package() -> None:
    with pytest.raises(ModuleNotFoundError, match="asig_nowhere"):
        autodiscover("asig_nowhere")


@pytest.mark.usefixtures("packages")
def test_import_error_inside_the_module_propagates() -> None:
    with pytest.raises(ModuleNotFoundError, match="asig_missing_dependency"):
        autodiscover("asig_broken")


@pytest.mark.usefixtures("packages")
def test_plain_module_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a package"):
        autodiscover("asig_plain")
    with pytest.raises(ValueError, match="not a package"):
        autodiscover(importlib.import_module("asig_plain"))


@pytest.mark.usefixtures("packages")
def test_submodule_that_is_a_plain_module_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"asig_shop\.signals"):
        autodiscover("asig_shop.signals")


@pytest.mark.parametrize("bad", [5, None, b"asig_shop", Path("asig_shop")])
def test_bad_package_type(bad: Any) -> None:
    with pytest.raises(TypeError, match="package names or modules"):
        autodiscover(bad)


@pytest.mark.parametrize("module", ["", "not-valid", "a.b", "signals.py", " signals"])
def test_module_must_be_a_plain_name(module: str) -> None:
    with pytest.raises(ValueError, match="plain module name"):
        autodiscover("asig_shop", module=module)


@pytest.mark.usefixtures("packages")
def test_module_init_is_refused_without_running_the_package_again() -> None:
    """``shop.__init__`` would be a second module made from ``shop/__init__.py``: its code,
    and every ``connect()`` in it, would run again."""
    import asig_runs
    import asig_shop

    assert importlib.util.find_spec("asig_shop.__init__") is not None  # Python would
    with pytest.raises(ValueError, match="__init__") as refused:
        autodiscover("asig_shop", module="__init__")
    assert str(refused.value) == (
        "autodiscover(): module='__init__' would import each package's __init__.py a second "
        "time, as another module; name the submodule that connects the receivers, such as "
        "'signals'"
    )
    assert asig_runs.ran == ["asig_shop"]  # once, by the import above
    assert "asig_shop.__init__" not in sys.modules
    assert autodiscover(asig_shop) == [sys.modules["asig_shop.signals"]]  # what to call
    assert asig_runs.ran == ["asig_shop"]


@pytest.mark.usefixtures("packages")
def test_module_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="module must be a string"):
        autodiscover("asig_shop", module=5)  # type: ignore[arg-type]


@pytest.mark.usefixtures("packages")
@pytest.mark.asyncio
async def test_autodiscover_at_startup_then_send() -> None:
    autodiscover("asig_shop", "asig_billing")

    import asig_shop

    responses = await asig_shop.order_paid.send(None, order=42)
    assert [v for _, v in responses] == ["receipt for 42"]


@pytest.mark.usefixtures("packages")
def test_a_packages_init_module_named_as_the_package_is_refused_before_it_runs() -> None:
    import asig_runs
    import asig_shop

    with pytest.raises(ValueError, match=r"name the package itself: 'asig_shop'"):
        autodiscover("asig_shop.__init__")
    assert asig_runs.ran == ["asig_shop"]  # once, by the import above
    assert "asig_shop.__init__" not in sys.modules
    assert autodiscover(asig_shop) == [sys.modules["asig_shop.signals"]]
