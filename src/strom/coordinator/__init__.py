"""The group coordinator (Kafka's classic group protocol) as a pure state machine.

Layers: ``records`` (the __consumer_offsets formats), ``member`` and ``group`` (a group's
state and its legal transitions), ``offsets`` (committed offsets and their expiry), ``shard``
(the Result / timer / ticket plumbing), ``offset_manager`` and ``coordinator`` (the
operations). Imports only ``strom.protocol``; the imperative shell is
``strom.server.coordinator_runtime``.
"""
