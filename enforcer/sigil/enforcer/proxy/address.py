"""A listen or forward address as the proxy's flags spell it, parsed without pulling in TLS or gRPC."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Address"]


@dataclass(frozen=True, slots=True)
class Address:
    """A host and TCP port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, default_host: str = "127.0.0.1") -> Address:
        """``HOST:PORT``, ``[V6]:PORT`` or a bare ``PORT`` (on ``default_host``); raises ValueError."""
        host, colon, port = text.rpartition(":")
        if not colon:
            host, port = default_host, text
        host = host.strip("[]") or default_host
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError(f"{port} is not a TCP port")
        return cls(host, number)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
