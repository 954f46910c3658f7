"""Importing each application's ``signals`` module once, at start-up."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def autodiscover(*packages: str | ModuleType, module: str = "signals") -> list[ModuleType]:
    """Import ``<package>.<module>`` for each package that has one; return those modules.

    Connecting receivers is a side effect of importing the module that defines them, so
    keep them in ``myapp/signals.py`` and call this once at start-up (an ASGI lifespan
    handler is a good place). Packages without such a module are skipped; an error raised
    while importing an existing one propagates. Python caches imports, so calling this
    again imports nothing twice.

    Args:
        packages: Package names (``"shop"``) or already imported packages.
        module: The submodule to look for in each package.

    Raises:
        ModuleNotFoundError: A named package does not exist.
        TypeError: An argument is neither a name nor a module.
        ValueError: *module* is not a plain module name, or is ``"__init__"`` (which
            would run each package's ``__init__.py`` again, as another module); or a named
            module is not a package.

    Example:
        ```python
        @asynccontextmanager
        async def lifespan(app):
            autodiscover("shop", "billing")
            yield
        ```
    """
    if not isinstance(module, str):
        raise TypeError(
            f"autodiscover(): module must be a string such as 'signals', got {module!r}"
        )
    if not module.isidentifier():
        raise ValueError(
            f"autodiscover(): module must be a plain module name such as 'signals', got {module!r}"
        )
    if module == "__init__":
        raise ValueError(
            "autodiscover(): module='__init__' would import each package's __init__.py a "
            "second time, as another module; name the submodule that connects the "
            "receivers, such as 'signals'"
        )
    found: list[ModuleType] = []
    for package in packages:
        if isinstance(package, str):
            if "__init__" in package.split("."):  # refused before it runs __init__.py again
                raise ValueError(
                    f"autodiscover(): {package!r} names a package's __init__ module, which "
                    f"importing would run a second time; name the package itself: "
                    f"{package.split('.__init__')[0]!r}"
                )
            parent = importlib.import_module(package)
        elif isinstance(package, ModuleType):
            parent = package
        else:
            raise TypeError(f"autodiscover() takes package names or modules, got {package!r}")
        if not hasattr(parent, "__path__"):
            raise ValueError(
                f"autodiscover(): {parent.__name__!r} is a module, not a package; name the "
                f"package that contains the {module!r} module"
            )
        name = f"{parent.__name__}.{module}"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return found
