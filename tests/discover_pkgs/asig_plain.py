"""A plain module, not a package: autodiscover() refuses it."""
