"""Helpers for testing applications against strom (the pytest plugin lives here)."""
