"""A small asyncio Kafka client for broker-to-broker calls (follower fetches, WriteTxnMarkers,
forwarding). It imports only ``strom.protocol`` and the standard library; user-facing tools use
confluent-kafka instead."""

from .connection import BrokerConnection, BrokerConnectionError, CloseReason
from .pool import ConnectionPool

__all__ = ["BrokerConnection", "BrokerConnectionError", "CloseReason", "ConnectionPool"]
