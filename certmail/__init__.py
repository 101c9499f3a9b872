"""certmail: registered post for email (client library and CLI)."""

__version__ = "0.1.0"
