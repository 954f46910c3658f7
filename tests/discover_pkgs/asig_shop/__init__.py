"""A package with a ``signals`` and a ``receivers`` module, for autodiscover()."""

import asig_runs

from asignals import AsyncSignal

asig_runs.ran.append(__name__)

order_paid = AsyncSignal("order_paid")

signals_imports = 0
receivers_imports = 0
