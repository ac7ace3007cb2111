"""X509-SVID minting rate from ready CSRs, against the cryptographic floor on the same machine.

``svids_per_s`` is the CA's batch API as the issuer calls it: CSR checks, signing in a worker thread, and the
journal row in SQLite. ``sign_only_per_s`` leaves the journal and the thread out. The floor is what minting cannot avoid: verifying the CSR's signature and making one ECDSA signature over a TBS
certificate of the same size, done with ``cryptography`` primitives alone. The ratio says how much of the cost is
Sigil's own. Pinned to one core. Writes bench/results/mint.json.

    python bench/mint.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sigil.ca.authority import AuthorityKind
from sigil.ca.minting import mint_x509_batch
from sigil.ca.service import CertificateAuthority, X509Request
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import SpiffeId

RESULTS = Path(__file__).parent / "results" / "mint.json"


def _csrs(count: int) -> list[bytes]:
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(min(count, 200))]
    return [
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(keys[i % len(keys)], hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
        for i in range(count)
    ]


def _rate(work: Callable[[], int], seconds: float) -> float:
    """Run ``work`` (which returns how many items it did) repeatedly for about ``seconds``; items per second."""
    done = 0
    start = time.perf_counter()
    while True:
        done += work()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


async def main(quick: bool) -> dict[str, float]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rounds = 5 if quick else 15
    seconds = 0.8 if quick else 2.0
    batch = 100
    csrs = _csrs(batch)
    identities = [SpiffeId.parse(f"spiffe://example.org/ns/bench/sa/w{i}") for i in range(batch)]
    with tempfile.TemporaryDirectory() as data_dir:
        ca = await CertificateAuthority.open(CaSettings(data_dir=Path(data_dir)))
        try:
            requests = [X509Request(identities[i], csr=csrs[i]) for i in range(batch)]
            sample = (await ca.mint_x509_svids(requests))[0].leaf  # also warms up
            key = ca.signer(AuthorityKind.X509).private_key
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            parsed = [x509.load_der_x509_csr(c) for c in csrs]
            tbs = sample.tbs_certificate_bytes

            def floor() -> int:
                for csr in parsed:
                    public = csr.public_key()
                    assert isinstance(public, ec.EllipticCurvePublicKey)
                    public.verify(
                        csr.signature, csr.tbs_certrequest_bytes, ec.ECDSA(hashes.SHA256())
                    )
                    key.sign(tbs, ec.ECDSA(hashes.SHA256()))
                return len(parsed)

            # Alternate the two measurements so that both see the same machine: these hosts are shared.
            def sign_only() -> int:
                # The CA's signing path alone (CSR checks, template, signature), without the journal.
                signer = ca.signer(AuthorityKind.X509)
                return len(mint_x509_batch(signer, requests, ca.now(), settings=ca.settings))

            mint_rates: list[float] = []
            sign_rates: list[float] = []
            floor_rates: list[float] = []
            for _ in range(rounds):
                done = 0
                start = time.perf_counter()
                while time.perf_counter() - start < seconds:
                    # The service path: batch minting (signatures in a worker thread), journal in SQLite.
                    done += len(await ca.mint_x509_svids(requests))
                mint_rates.append(done / (time.perf_counter() - start))
                sign_rates.append(_rate(sign_only, seconds))
                floor_rates.append(_rate(floor, seconds))
        finally:
            await ca.aclose()
    ratios = sorted(m / f for m, f in zip(mint_rates, floor_rates, strict=True))
    sign_ratios = [m / f for m, f in zip(sign_rates, floor_rates, strict=True)]
    return {
        "svids_per_s": round(statistics.median(mint_rates), 1),
        "floor_per_s": round(statistics.median(floor_rates), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(ratios[0], 3),
        "ratio_max": round(ratios[-1], 3),
        "sign_only_per_s": round(statistics.median(sign_rates), 1),
        "sign_only_ratio": round(statistics.median(sign_ratios), 3),
        "rounds": rounds,
        "batch": batch,
        "key_type": "ec-p256",
        "cores": 1,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of well under a minute")
    args = parser.parse_args()
    figures = asyncio.run(main(args.quick))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for name, value in figures.items():
        print(f"{name:>14}: {value}")
