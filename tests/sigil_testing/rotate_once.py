"""Run one rotation step in its own process, with the clock moved forward, and print the active authorities.

Usage: python -m sigil_testing.rotate_once DATABASE_URL KEY_DIR DATA_DIR OFFSET_SECONDS
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sigil.ca.authority import AuthorityKind
from sigil.ca.service import CertificateAuthority
from sigil.ca.settings import CaSettings
from sigil_testing.clock import FakeClock


async def _main(url: str, key_dir: str, data_dir: str, offset: float) -> None:
    settings = CaSettings(data_dir=Path(data_dir), database_url=url, key_dir=Path(key_dir))

    # One rotation step at one instant: the suite's fake clock, set that far past the real time.
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=offset))
    ca = await CertificateAuthority.open(settings, clock=clock)
    try:
        await ca.rotate()
        print(
            ca.signer(AuthorityKind.X509).authority.authority_id,
            ca.signer(AuthorityKind.JWT).authority.authority_id,
        )
    finally:
        await ca.aclose()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
