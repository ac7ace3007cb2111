"""Sigil issuer: the service in front of the CA that decides who may hold which identity.

Its parts are imported by name and kept out of this module so importing ``sigil.issuer`` stays light. From the top
down (import-linter holds the order: a lower part never imports a higher one):

- ``cli`` and ``verbs``: ``sigil-server``, its ``run`` and its admin verbs;
- ``edge``: the HTTP edge (application assembly, listeners, listener TLS, problems, rate limits, ``routes``);
- ``admin``: the admin verbs behind one interface, on the local socket or in-process;
- ``bundles``: the bundle feed agents long-poll, federation with other trust domains, the bundle ConfigMap;
- ``agents``: node agents as callers, authenticated afresh on every request;
- ``datastore``: the issuer's tables (registration entries, join tokens, attested agents) and their migrations;

beside them ``agentapi`` (the wire contract with the node agent, shared with ``client``), ``kube`` (TokenReview,
the pod cache, node authorization), ``settings``, ``errors`` (refusals, their reason codes and HTTP answers) and
``metrics``.
"""

from __future__ import annotations

__all__: list[str] = []
