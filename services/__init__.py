"""Plotline services."""
