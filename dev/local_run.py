"""``make run``: an issuer and a node agent on this host, with the embedded defaults, until Ctrl-C.

``python dev/local_run.py`` starts ``sigil-server run`` (SQLite and a local trust domain under
``$SIGIL_DATA_DIR``, ``./.sigil`` by default), enrols this host the way an operator would (a join token, handed
to the agent in a 0600 file and never on a command line where ``ps`` would show it; an entry giving the current
user's uid the ID ``spiffe://example.org/local/uid-UID``; the trust bundle written for the agent),
starts ``sigil-agent run`` with its socket under the data directory (no root needed), fetches one SVID through it
with py-spiffe to prove the path works, and prints the ``SPIFFE_ENDPOINT_SOCKET=...`` line a workload needs. Ctrl-C
or SIGTERM stops the agent, then the server, each with SIGTERM so both drain.

Both run as the same commands an operator uses, as child processes: this module only orchestrates them, and a second
run reuses everything (the agent resumes its stored SVID while it is valid, and is given a new join token
once it has expired; the entry exists already).

It lives in ``dev/``, outside the ``sigil`` namespace and the wheel, because it sits above both services: inside
``sigil.node_agent`` it made the agent's package the one place that knew how to start the issuer, and no layer
contract could say that an orchestrator of both may import either. Here it is a script that only the repository's
``make run`` uses, and the import-linter contracts describe the product alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spiffe import WorkloadApiClient

from sigil.ca.config import DEFAULT_DATA_DIR
from sigil.ca.keys import write_secret_file
from sigil.ca.spiffe_id import TrustDomain
from sigil.node_agent.upstream.agent_svid import load_stored_identity

__all__ = ["main"]

_TRUST_DOMAIN = "example.org"
#: The server's address unless ``$SIGIL_LISTEN`` (which sigil-server reads too) names another.
_DEFAULT_ISSUER = "127.0.0.1:8081"
#: Where the join token waits for the agent (0600), removed when the run ends.
_JOIN_TOKEN_FILE = "join-token"  # noqa: S105 -- a file name, not a token
# AF_UNIX paths stop near 107 bytes; a deep checkout falls back to a short directory under /tmp.
_MAX_SOCKET_PATH = 100


def _say(line: str) -> None:
    print(f"[sigil] {line}", flush=True)


async def _command(*argv: str, env: dict[str, str]) -> str:
    """Run ``python -m MODULE ...`` to completion; its stdout, or an error naming the command."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *argv, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited with {process.returncode}")
    return out.decode()


async def _server_up(
    server: asyncio.subprocess.Process, issuer: str, *, within: float = 60.0
) -> None:
    host, port = issuer.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
        except OSError:
            if server.returncode is not None:
                raise RuntimeError(f"sigil-server exited with {server.returncode}") from None
            if loop.time() > deadline:
                raise RuntimeError(f"sigil-server did not listen on {issuer}") from None
            await asyncio.sleep(0.2)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def _enrol(data_dir: Path, env: dict[str, str]) -> tuple[list[str], str]:
    """Agent flags (token only when the agent has no stored SVID) and the workload's SPIFFE ID."""
    server = ("sigil.issuer.cli",)
    bundle = data_dir / "bootstrap.pem"
    pem = await _command(*server, "bundle", "show", "--format", "pem", env=env)
    await asyncio.to_thread(bundle.write_text, pem)
    flags = ["--trust-bundle", str(bundle)]
    stored = await asyncio.to_thread(
        load_stored_identity, data_dir / "agent", TrustDomain(_TRUST_DOMAIN)
    )
    # The agent resumes a stored SVID only while it is valid; one that expired (a run days ago) needs a new token.
    soon = datetime.now(UTC) + timedelta(minutes=1)
    if stored.agent is not None and stored.agent.svid.expires_at > soon:
        parent = str(stored.agent.svid.spiffe_id)
    else:
        token = json.loads(
            await _command(*server, "token", "generate", "--output", "json", env=env)
        )
        parent = token["agent_id"]
        # Never on the command line, where ps shows it to every user: a file only this user can read.
        token_file = data_dir / _JOIN_TOKEN_FILE
        await asyncio.to_thread(write_secret_file, token_file, token["token"].encode())
        flags += ["--join-token-file", str(token_file)]
    workload_id = f"spiffe://{_TRUST_DOMAIN}/local/uid-{os.getuid()}"
    entries = json.loads(await _command(*server, "entry", "list", "--output", "json", env=env))
    if not any(e["spiffe_id"] == workload_id and e["parent_id"] == parent for e in entries):
        await _command(
            *server,
            "entry",
            "create",
            "--spiffe-id",
            workload_id,
            "--parent-id",
            parent,
            "--selector",
            f"unix:uid:{os.getuid()}",
            env=env,
        )
    return flags, workload_id


def _socket_path(data_dir: Path) -> Path:
    path = data_dir / "agent.sock"
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        return path
    return Path(tempfile.mkdtemp(prefix="sigil-", dir="/tmp")) / "agent.sock"


def _fetch_once(endpoint: str) -> str:
    with WorkloadApiClient(socket_path=endpoint, default_timeout=30) as client:
        return str(client.fetch_x509_svid().spiffe_id)


async def _stop(process: asyncio.subprocess.Process, name: str) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=15)
        except TimeoutError:
            _say(f"{name} did not stop in 15 s; killing it")
            process.kill()
            await process.wait()


async def run(data_dir: Path) -> int:
    """Start both, enrol, prove, wait for Ctrl-C or SIGTERM, stop both."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "SIGIL_DATA_DIR": str(data_dir), "SIGIL_TRUST_DOMAIN": _TRUST_DOMAIN}
    issuer = os.environ.get("SIGIL_LISTEN") or _DEFAULT_ISSUER
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop.set)
    server = agent = None
    try:
        _say(f"data directory {data_dir}")
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sigil.issuer.cli", "--listen", issuer, "run", env=env
        )
        await _server_up(server, issuer)
        flags, workload_id = await _enrol(data_dir, env)
        socket_path = _socket_path(data_dir)
        agent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sigil.node_agent.cli",
            "run",
            "--issuer-url",
            f"https://{issuer}",
            "--socket",
            str(socket_path),
            *flags,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        endpoint = ""
        while not endpoint and agent.stdout is not None:
            line = (await agent.stdout.readline()).decode()
            if not line:
                raise RuntimeError("sigil-agent exited before serving")
            if line.startswith("SPIFFE_ENDPOINT_SOCKET="):
                endpoint = line.strip().partition("=")[2]
        got = await asyncio.to_thread(_fetch_once, endpoint)
        _say(f"fetched an X509-SVID for {got} (expected {workload_id})")
        print(f"\nSPIFFE_ENDPOINT_SOCKET={endpoint}\n", flush=True)
        _say(f"try: sigil-agent api fetch x509 --socket {socket_path}")
        _say("Ctrl-C stops the agent and the server")
        await stop.wait()
        return 0
    finally:
        _say("stopping")
        if agent is not None:
            await _stop(agent, "sigil-agent")
        if server is not None:
            await _stop(server, "sigil-server")
        # Spent once the agent attested; unspent, it is still a credential and must not linger.
        (data_dir / _JOIN_TOKEN_FILE).unlink(missing_ok=True)
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def main() -> int:
    """Entry point of ``python dev/local_run.py``."""
    data_dir = Path(os.environ.get("SIGIL_DATA_DIR") or DEFAULT_DATA_DIR).absolute()
    try:
        return asyncio.run(run(data_dir))
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
