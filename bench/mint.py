"""X509-SVID minting rate from ready CSRs, against the cryptographic floor on the same machine.

``svids_per_s`` is the CA's batch API as the issuer calls it: CSR checks, signing in a worker thread, and the
journal row in SQLite. ``sign_only_per_s`` is minting itself (CSR checks, the leaf rules, the DER template, the
signature) without the journal and the thread. The floor is what minting cannot avoid: verifying the CSR's signature
and making one signature over a TBS certificate of the same size, with ``cryptography``'s primitives alone, the same
key type for the CA and the CSRs, in the same run. The ratios say how much of the cost is Sigil's own. Each key
type Sigil signs with (P-256, the headline; P-384; RSA-2048) in turn. Pinned to one core. Writes
bench/results/mint.json.

    python bench/mint.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _results import merge_results  # bench/ is the script's own directory
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sigil.ca.authority import AuthorityKind
from sigil.ca.keys import KeyType, generate_key, signature_hash
from sigil.ca.minting import mint_x509_batch
from sigil.ca.service import CertificateAuthority, X509Request
from sigil.ca.settings import CaSettings
from sigil.ca.spiffe_id import SpiffeId

RESULTS = Path(__file__).parent / "results" / "mint.json"


def _csrs(count: int, key_type: KeyType = KeyType.EC_P256) -> list[bytes]:
    """CSRs over keys of ``key_type`` (RSA keys are slow to make, so a few are reused)."""
    keys = [generate_key(key_type) for _ in range(min(count, 200 if key_type != "rsa-2048" else 8))]
    return [
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(keys[i % len(keys)], signature_hash(keys[i % len(keys)]))
        .public_bytes(serialization.Encoding.DER)
        for i in range(count)
    ]


def _verify(key: object, signature: bytes, data: bytes, digest: hashes.HashAlgorithm) -> None:
    """A signature check with cryptography's own primitives, as the floor makes it."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, data, ec.ECDSA(digest))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, data, padding.PKCS1v15(), digest)
    else:
        raise TypeError(type(key).__name__)


def _sign(key: object, data: bytes, digest: hashes.HashAlgorithm) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(digest))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), digest)
    raise TypeError(type(key).__name__)


def _rate(work: Callable[[], int], seconds: float, cpu: list[float]) -> float:
    """Run ``work`` (which returns how many items it did) repeatedly for about ``seconds``; items per second.

    The process's CPU seconds per item go to ``cpu``: unlike the rate, they do not depend on the share of the core
    that the other work on a shared machine leaves to this run.
    """
    done = 0
    start, used = time.perf_counter(), time.process_time()
    while True:
        done += work()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            cpu.append((time.process_time() - used) / done)
            return done / elapsed


async def _one_key_type(key_type: KeyType, *, rounds: int, seconds: float) -> dict[str, object]:
    """The three rates for one key type: the CA and the CSRs' keys are both of it, as the floor's are."""
    batch = 100
    csrs = _csrs(batch, key_type)
    identities = [SpiffeId.parse(f"spiffe://example.org/ns/bench/sa/w{i}") for i in range(batch)]
    with tempfile.TemporaryDirectory() as data_dir:
        settings = CaSettings(data_dir=Path(data_dir), key_type=key_type)
        ca = await CertificateAuthority.open(settings)
        try:
            requests = [X509Request(identities[i], csr=csrs[i]) for i in range(batch)]
            sample = (await ca.mint_x509_svids(requests))[0].leaf  # also warms up
            key = ca.signer(AuthorityKind.X509).private_key
            digest = signature_hash(key)
            parsed = [x509.load_der_x509_csr(c) for c in csrs]
            tbs = sample.tbs_certificate_bytes

            def floor() -> int:
                # What minting cannot avoid: the CSR's signature checked, one signature over a TBS of this size.
                for csr in parsed:
                    public = csr.public_key()
                    hash_algorithm = csr.signature_hash_algorithm
                    assert hash_algorithm is not None
                    _verify(public, csr.signature, csr.tbs_certrequest_bytes, hash_algorithm)
                    _sign(key, tbs, digest)
                return len(parsed)

            def sign_only() -> int:
                # The CA's signing path alone (CSR checks, template, signature), without the journal.
                signer = ca.signer(AuthorityKind.X509)
                return len(mint_x509_batch(signer, requests, ca.now(), settings=ca.settings))

            # Alternate the measurements so that all see the same machine: these hosts are shared.
            mint_rates: list[float] = []
            sign_rates: list[float] = []
            floor_rates: list[float] = []
            mint_cpu: list[float] = []
            sign_cpu: list[float] = []
            floor_cpu: list[float] = []
            for _ in range(rounds):
                done = 0
                start, used = time.perf_counter(), time.process_time()
                while time.perf_counter() - start < seconds:
                    # The service path: batch minting (signatures in a worker thread), journal in SQLite.
                    done += len(await ca.mint_x509_svids(requests))
                mint_rates.append(done / (time.perf_counter() - start))
                mint_cpu.append((time.process_time() - used) / done)
                sign_rates.append(_rate(sign_only, seconds, sign_cpu))
                floor_rates.append(_rate(floor, seconds, floor_cpu))
        finally:
            await ca.aclose()
    ratios = sorted(m / f for m, f in zip(mint_rates, floor_rates, strict=True))
    sign_ratios = sorted(m / f for m, f in zip(sign_rates, floor_rates, strict=True))
    return {
        "svids_per_s": round(statistics.median(mint_rates), 1),
        "floor_per_s": round(statistics.median(floor_rates), 1),
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(ratios[0], 3),
        "ratio_max": round(ratios[-1], 3),
        "sign_only_per_s": round(statistics.median(sign_rates), 1),
        "sign_only_ratio": round(statistics.median(sign_ratios), 3),
        "sign_only_ratio_min": round(sign_ratios[0], 3),
        "sign_only_ratio_max": round(sign_ratios[-1], 3),
        # The same ratios from CPU time per SVID (floor over ours): steady however busy the machine is.
        "floor_cpu_us": round(statistics.median(floor_cpu) * 1e6, 1),
        "sign_only_cpu_us": round(statistics.median(sign_cpu) * 1e6, 1),
        "svid_cpu_us": round(statistics.median(mint_cpu) * 1e6, 1),
        "sign_only_ratio_cpu": round(statistics.median(floor_cpu) / statistics.median(sign_cpu), 3),
        "ratio_cpu": round(statistics.median(floor_cpu) / statistics.median(mint_cpu), 3),
    }


async def _pool_cpu(rounds: int) -> dict[str, float]:
    """CPU per SVID left in the server's process when two workers verify and sign, against all of it in process.

    CPU time, not wall time: it does not depend on what share of the cores this shared machine gives the run. With
    workers the server's process keeps the leaf rules, the pipes and the SVID objects; the workers the rest.
    """
    batch = 100
    csrs = _csrs(batch)
    identities = [SpiffeId.parse(f"spiffe://example.org/ns/bench/sa/w{i}") for i in range(batch)]
    requests = [X509Request(identities[i], csr=csrs[i]) for i in range(batch)]
    with tempfile.TemporaryDirectory() as data_dir:
        ca = await CertificateAuthority.open(CaSettings(data_dir=Path(data_dir), signing_workers=2))
        try:
            pool = ca.signing_pool
            assert pool is not None
            signer = ca.signer(AuthorityKind.X509)
            await pool.mint(signer, requests, ca.now(), settings=ca.settings)
            cpu = time.process_time()
            for _ in range(rounds):
                await pool.mint(signer, requests, ca.now(), settings=ca.settings)
            pooled = (time.process_time() - cpu) / rounds / batch
            cpu = time.process_time()
            for _ in range(rounds):
                mint_x509_batch(signer, requests, ca.now(), settings=ca.settings)
            alone = (time.process_time() - cpu) / rounds / batch
        finally:
            await ca.aclose()
    return {
        "in_process_cpu_us": round(alone * 1e6, 1),
        "with_2_workers_server_cpu_us": round(pooled * 1e6, 1),
    }


async def main(quick: bool) -> dict[str, object]:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rounds = 5 if quick else 15
    seconds = 0.6 if quick else 2.0
    by_type = {
        kind.value: await _one_key_type(kind, rounds=rounds, seconds=seconds) for kind in KeyType
    }
    # The headline figures are P-256's, the default key type; the others follow under their names.
    return {
        **by_type[KeyType.EC_P256.value],
        "key_type": KeyType.EC_P256.value,
        "by_key_type": by_type,
        "signing_workers": await _pool_cpu(10 if quick else 40),
        "rounds": rounds,
        "batch": 100,
        "cores": 1,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a run of well under a minute")
    args = parser.parse_args()
    figures = asyncio.run(main(args.quick))
    figures["quick"] = args.quick
    merge_results(RESULTS, figures)
    for name, value in figures.items():
        if name not in {"by_key_type", "signing_workers"}:
            print(f"{name:>20}: {value}")
    for kind, rates in figures["by_key_type"].items():  # type: ignore[attr-defined]
        print(
            f"{kind:>20}: sign-only {rates['sign_only_ratio']} of the floor "
            f"({rates['sign_only_per_s']} vs {rates['floor_per_s']}/s), with the journal {rates['ratio']}; "
            f"by CPU time {rates['sign_only_ratio_cpu']} and {rates['ratio_cpu']}"
        )
    print(f"{'signing workers':>20}: {figures['signing_workers']}")
