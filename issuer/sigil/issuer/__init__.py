"""Sigil issuer: the service in front of the CA that decides who may hold which identity.

Its parts are imported by name and kept out of this module so importing ``sigil.issuer`` stays light:
``sigil.issuer.errors`` (refusals, their reason codes and HTTP answers), ``sigil.issuer.kube`` (TokenReview
authentication, the watched pod cache and node authorization).
"""

from __future__ import annotations

__all__: list[str] = []
