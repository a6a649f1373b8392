"""Fault tests of cluster mode: the failures of docs/CLUSTER.md with a Jepsen-style checker."""
