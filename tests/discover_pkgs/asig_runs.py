"""Which modules of the test packages ran, by ``__name__``, in order (a module executed a
second time under another name shows up twice)."""

ran: list[str] = []
