"""A package without a ``signals`` module: autodiscover() skips it."""
