"""``sigil-server``'s settings: the whole configuration (``config``) and the ``server`` section's parts (``sections``).

Built once in :mod:`sigil.issuer.cli` from the file, the environment and the flags, then passed down; these are the
only modules of the issuer that read the environment.
"""

from __future__ import annotations

from sigil.issuer.settings.config import ServerSettings, load_server_settings
from sigil.issuer.settings.sections import IssuerSettings, PolicySettings

__all__ = ["IssuerSettings", "PolicySettings", "ServerSettings", "load_server_settings"]
