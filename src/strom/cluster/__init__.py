"""Cluster mode: replica placement and the controller's pure state machine."""
