"""Plotline client, CLI and server launcher."""
