"""Plotline client, CLI and server launcher."""

from .session import PlotlineError, Session

__all__ = ["PlotlineError", "Session"]
