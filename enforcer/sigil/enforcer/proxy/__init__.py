"""``sigil-enforcer proxy``: mTLS in front of (inbound) and behind (outbound) a workload that speaks plain TCP.

The package, from the command line down::

    command.py   the subcommand's flags; builds the settings once and runs the server
    settings.py  ProxySettings (with Address): the flags and environment checked and typed, frozen
    server.py    one process: identity source, TLS contexts, policies, metrics, signals, drain
    listener.py  InboundProxy and OutboundProxy: what an inbound and an outbound connection do
    connections.py  ProxyListener: a listener whose connections are tasks it owns, drained on shutdown
    probes.py    kubelet probes on plaintext, judged and answered; streams.py: splicing and closing streams

The listeners and the server load on first use (PEP 562): declaring the subcommand's flags, which every
``sigil-enforcer`` run does, must not import gRPC, aiohttp or prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sigil.enforcer.proxy.settings import Address, Inbound, Outbound, ProxySettings
from sigil.kit.lazy import lazy_exports

if TYPE_CHECKING:
    from sigil.enforcer.proxy.listener import InboundProxy, OutboundProxy, refusal_reporter
    from sigil.enforcer.proxy.server import serve

__all__ = [
    "Address",
    "Inbound",
    "InboundProxy",
    "Outbound",
    "OutboundProxy",
    "ProxySettings",
    "refusal_reporter",
    "serve",
]

_LAZY = {
    "InboundProxy": "sigil.enforcer.proxy.listener",
    "OutboundProxy": "sigil.enforcer.proxy.listener",
    "refusal_reporter": "sigil.enforcer.proxy.listener",
    "serve": "sigil.enforcer.proxy.server",
}


__getattr__ = lazy_exports(__name__, _LAZY)
