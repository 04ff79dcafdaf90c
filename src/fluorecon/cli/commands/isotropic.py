"""`fluorecon isotropic` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this command to ``app``. (Placeholder until the command lands.)"""
