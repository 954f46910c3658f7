"""The transactional outbox: durable receivers and ``outbox.send``, written in the
committing transaction and delivered by a relay (`Outbox`, in `._outbox`).

* `_table`: the table and every statement run on it;
* `_rows`: what a row holds, and what a leased row becomes for the receivers;
* `_durable`: durable receivers, and the rows a commit writes for them;
* `_relay`: the relay: leases, delivery, retries with backoff, dead rows;
* `_outbox`: `Outbox`, the public face of the others.

This module imports nothing: the model signals import `_durable` while they are defined.
"""
