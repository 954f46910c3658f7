"""A package with a ``signals`` and a ``receivers`` module, for autodiscover()."""

from asignals import AsyncSignal

order_paid = AsyncSignal("order_paid")

signals_imports = 0
receivers_imports = 0
