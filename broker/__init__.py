"""Scanbridge core: wire protocol, broker, actor runtime, client, configuration and CLI."""

__version__ = "0.1.0"
