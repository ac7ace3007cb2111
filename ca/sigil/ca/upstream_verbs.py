"""The operator's upstream rotation verbs on an open CA: each one locked step, then the bundle and a re-read.

:mod:`sigil.ca.upstream_rotation` holds the steps and why they are shaped so; this module only runs them on a
:class:`~sigil.ca.service.CertificateAuthority` and destroys revoked keys once the revoke has committed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from sigil.ca.authority import Authority, AuthorityKind
from sigil.ca.datastore.transaction import Transaction
from sigil.ca.errors import UpstreamAuthorityError
from sigil.ca.service import CertificateAuthority
from sigil.ca.upstream import load_upstream_ca
from sigil.ca.upstream_rotation import (
    Retirement,
    UpstreamView,
    activate_upstream,
    prepare_upstream,
    resolve_upstream,
    retire_upstream,
    upstream_views,
)

__all__ = ["UpstreamVerbs"]


class UpstreamVerbs:
    """``upstream prepare|activate|retire|show`` on ``ca``."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self._ca = ca

    async def prepare(self, directory: Path) -> Authority:
        """Load and cross-check the files in ``directory``; prepare an X.509 authority under them."""
        if not directory.is_absolute():
            # Recorded for every replica, which may run elsewhere: a relative path would mean something else there.
            raise UpstreamAuthorityError(str(directory), "must be an absolute path")
        new = await asyncio.to_thread(load_upstream_ca, directory)
        ca = self._ca

        async def step(tx: Transaction, now: datetime) -> Authority:
            return await prepare_upstream(
                tx,
                now,
                new,
                directory,
                current=ca.upstream,
                settings=ca.settings,
                keys=ca.keys,
            )

        return await ca.run_step(step, upstream=True)

    async def activate(self) -> tuple[Authority, dict[str, int]]:
        """Make the authority under the prepared upstream sign; taint the old ones (see :func:`activate_upstream`)."""
        ca = self._ca

        async def step(tx: Transaction, now: datetime) -> tuple[Authority, dict[str, int]]:
            upstream = await resolve_upstream(tx, ca.upstream)
            if upstream is None:
                raise UpstreamAuthorityError("ca.upstream_dir", "is not set: there is no upstream")
            return await activate_upstream(
                tx, now, upstream=upstream, settings=ca.settings, keys=ca.keys
            )

        return await ca.run_step(step, upstream=True)

    async def retire(self, *, force: bool = False) -> Retirement:
        """Drop the old upstream root from the bundle (see :func:`retire_upstream`), then destroy the keys."""

        async def step(tx: Transaction, now: datetime) -> Retirement:
            return await retire_upstream(tx, now, force=force)

        retired = await self._ca.run_step(step, upstream=True)
        for authority_id in retired.revoked:
            await self._ca.keys.delete(AuthorityKind.X509, authority_id)
        return retired

    async def show(self) -> list[UpstreamView]:
        """Every recorded upstream with its authorities and what is still chained to it, unreplaced."""
        return await self._ca.run_step(upstream_views)
