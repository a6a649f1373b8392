"""Request handlers, one module per API family. Importing a module registers its APIs."""

import importlib

_MODULES = (
    "api_versions",
    "metadata",
    "produce",
    "producers",
    "fetch",
    "list_offsets",
    "leader_epoch",
    "topics",
    "configs",
    "records",
    "cluster",
    "groups",
    "consumer_groups",
    "share_groups",
    "offsets",
    "transactions",
    "txn_markers",
    "share_state",
    "elections",
    "reassignments",
    "sasl",
    "scram_users",
    "acls",
    "quotas",
)


def load_all() -> None:
    for name in _MODULES:
        importlib.import_module(f"strom.handlers.{name}")
