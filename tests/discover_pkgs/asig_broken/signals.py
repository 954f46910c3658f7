"""Importing this fails: autodiscover() must not hide that."""

import asig_missing_dependency  # type: ignore[import-not-found]  # noqa: F401
