"""Enforcer benchmark: peer chain verifications per second, uncached and cached, against the ECDSA floor.

Every figure comes from the same run, over the same 1,000 peers (P-256 SVIDs minted by Sigil's CA code):

* ``verify_floor_per_s``: raw ECDSA-P256/SHA-256 verification of each leaf's signature with the authority's
  key, and nothing else: what any verifier must pay at the least;
* ``verify_per_s``: :class:`~sigil.enforcer.verify.SvidVerifier` with its cache off: parsing the DER, every
  X509-SVID leaf rule, and RFC 5280 path validation against the peer's own trust domain bundle (for these
  leaves, after the first, the leaf-profile path of :mod:`sigil.enforcer.verify_profile`: one signature
  check plus what differs between leaves of one template);
* ``verify_pyca_per_s``: the same with the leaf-profile path off, every leaf through pyca/cryptography's
  path validation (what ``verify_per_s`` was before that path existed);
* ``verify_cached_per_s``: the same verifier with its cache on and warm: a repeated peer costs the SHA-256
  of its chain and a dict lookup.

Results are merged into ``bench/results/enforce.json`` so that figures written by other parts survive.

    python bench/verify.py            # about 30 s of measurement
    python bench/verify.py --quick    # well under a minute in all
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _results import merge_results  # bench/ is the script's own directory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sigil.ca.authority import Signer, new_x509_authority
from sigil.ca.bundle import TrustBundle
from sigil.ca.keys import generate_key
from sigil.ca.spiffe_id import TrustDomain
from sigil.ca.x509svid import mint_x509_svid
from sigil.enforcer.bundles import BundleSet
from sigil.enforcer.verify import SvidVerifier

RESULTS = Path(__file__).parent / "results" / "enforce.json"
PEERS = 1_000


def _pin_to_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def build_peers(count: int) -> tuple[BundleSet, ec.EllipticCurvePublicKey, list[list[bytes]]]:
    """A trust domain (plus a federated one, so lookups are per domain) and ``count`` peer chains in DER."""
    now = datetime.now(UTC)
    bundles = []
    signers = []
    for name in ("cluster.local", "partner.example"):
        key = generate_key()
        authority = new_x509_authority(TrustDomain(name), key, now=now, ttl=timedelta(days=1))
        assert authority.certificate is not None
        bundles.append(TrustBundle(TrustDomain(name), (authority.certificate,)))
        signers.append(Signer(authority, key))
    signer = signers[0]
    chains = []
    for n in range(count):
        leaf_key = generate_key()
        svid = mint_x509_svid(
            signer,
            spiffe_id=TrustDomain("cluster.local").spiffe_id(
                "ns", f"ns-{n % 50}", "sa", f"app-{n}"
            ),
            public_key=leaf_key.public_key(),
            ttl=timedelta(hours=1),
            now=now,
        )
        chains.append([cert.public_bytes(serialization.Encoding.DER) for cert in svid.chain])
    public_key = signer.authority.public_key
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return BundleSet.of(*bundles), public_key, chains


def rate(work: Callable[[], int], seconds: float) -> tuple[float, int]:
    """Run ``work`` (returns how many operations it did) until ``seconds`` pass; operations per CPU second.

    CPU time of this thread (``time.thread_time``), not wall time: on a machine shared with other work, wall
    time would charge their share to whichever figure happened to run beside it.
    """
    done = 0
    cpu = time.thread_time()
    deadline = time.perf_counter() + seconds
    while True:
        done += work()
        if time.perf_counter() >= deadline:
            return done / (time.thread_time() - cpu), done


def floor_work(
    public_key: ec.EllipticCurvePublicKey, chains: Sequence[list[bytes]]
) -> Callable[[], int]:
    leaves = [x509.load_der_x509_certificate(chain[0]) for chain in chains]
    signed = [(leaf.signature, leaf.tbs_certificate_bytes) for leaf in leaves]
    algorithm = ec.ECDSA(hashes.SHA256())

    def work() -> int:
        for signature, data in signed:
            public_key.verify(signature, data, algorithm)
        return len(signed)

    return work


def verify_work(verifier: SvidVerifier, chains: Sequence[list[bytes]]) -> Callable[[], int]:
    def work() -> int:
        for chain in chains:
            verifier.verify(chain)
        return len(chains)

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short run, well under a minute")
    parser.add_argument(
        "--seconds", type=float, help="measurement time per figure (default 10, quick 3)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    core = _pin_to_one_core()
    bundles, public_key, chains = build_peers(PEERS)

    uncached = SvidVerifier(bundles, cache_size=0)
    pyca = SvidVerifier(bundles, cache_size=0, leaf_profiles=False)
    cached = SvidVerifier(bundles, cache_size=PEERS * 2)
    verify_work(cached, chains)()  # warm: every peer verified once

    # Interleaved so that drift in the machine's speed touches every figure alike.
    rounds = 3
    floor_rates, uncached_rates, cached_rates, pyca_rates = [], [], [], []
    for _ in range(rounds):
        floor_rates.append(rate(floor_work(public_key, chains), seconds / rounds)[0])
        uncached_rates.append(rate(verify_work(uncached, chains), seconds / rounds)[0])
        pyca_rates.append(rate(verify_work(pyca, chains), seconds / rounds)[0])
        cached_rates.append(rate(verify_work(cached, chains), seconds / rounds)[0])
    floor, verify, verify_cached, verify_pyca = (
        max(r) for r in (floor_rates, uncached_rates, cached_rates, pyca_rates)
    )
    figures = {
        "verify_floor_per_s": round(floor),
        "verify_per_s": round(verify),
        "verify_cached_per_s": round(verify_cached),
        "verify_pyca_per_s": round(verify_pyca),
        "verify_pyca_vs_floor": round(verify_pyca / floor, 3),
        "verify_uncached_vs_floor": round(verify / floor, 3),
        "verify_peers": PEERS,
        "verify_seconds_per_figure": seconds,
        "verify_core": core,
        "verify_quick": args.quick,
        "verify_cache_hits": cached.hits,
        "python": platform.python_version(),
    }
    merge_results(args.output, figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
