"""Trainyard's Python client: `Client` for scripts and notebooks, `trainyard` on the command line."""

from __future__ import annotations

from trainyard_client.client import TERMINAL, ApiError, Client
from trainyard_client.config import ConfigError
from trainyard_client.follow import SocketClosed
from trainyard_client.jobspec import SpecError

__all__ = ["TERMINAL", "ApiError", "Client", "ConfigError", "SocketClosed", "SpecError"]
__version__ = "0.1.0"
