"""Helpers for the lab tests: the netfo process, traffic, machine state."""
