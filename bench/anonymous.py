"""What a caller without a key can make a `serve` process hold or write:

    uv run python bench/anonymous.py [--megabytes 400] [--reads 2000]

Starts an embedded PostgreSQL and `serve --workers 1`, then, without an API key:
- sends `POST /connect-sessions` with a body of `--megabytes` MB, once with its length declared
  and once streamed (chunked), and prints the server's RSS before and after each (and their
  ratio), with the answer's status;
- sends `--reads` token reads with random keys and random subjects, and prints how many audit
  rows they wrote (per read: the ratio to an audit that recorded every one), after the
  records' flush.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
from running import free_port, get, running, service_env

from tiktok_auth_dev.embedded_postgres import embedded_postgres
from tiktok_auth_service.db import migrate

CHUNK = 1 << 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def big_body(port: int, megabytes: int, declared: bool) -> tuple[str, int]:
    """Send the body a megabyte at a time until the server answers or closes the connection;
    (its status, or how it closed; MB sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = f"Content-Length: {megabytes * CHUNK}" if declared else "Transfer-Encoding: chunked"
    writer.write(
        "\r\n".join(
            [
                "POST /connect-sessions HTTP/1.1",
                "Host: bench",
                "Content-Type: application/json",
                framing,
                "",
                "",
            ]
        ).encode()
    )
    answer = asyncio.ensure_future(reader.readline())
    sent = 0
    try:
        while sent < megabytes and not answer.done():
            chunk = b"{" * CHUNK
            writer.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += 1
        if not declared and not answer.done():
            writer.write(b"0\r\n\r\n")  # the last chunk
        status_line = await asyncio.wait_for(answer, timeout=30)
    except ConnectionError as exc:
        # Closed while the body was still coming: the kernel's reset can discard an answer
        # that had already arrived.
        return type(exc).__name__.removesuffix("Error"), sent
    finally:
        writer.close()
        if not answer.done():
            answer.cancel()
        elif not answer.cancelled():
            answer.exception()  # retrieved: the reset is the outcome reported above
    return status_line.split()[1].decode(), sent


async def anonymous_reads(url: str, reads: int) -> Counter[int]:
    """`reads` reads, 50 at a time, each with a random key and a random 32-digit subject."""
    statuses: Counter[int] = Counter()
    for start in range(0, reads, 50):
        batch = [
            get(
                f"{url}/tokens/{''.join(secrets.choice('0123456789') for _ in range(32))}",
                {"Authorization": f"Bearer tas_{secrets.token_urlsafe(32)}"},
            )
            for _ in range(min(50, reads - start))
        ]
        statuses.update(await asyncio.gather(*batch))
    return statuses


async def audit_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows: int = await connection.fetchval("SELECT count(*) FROM token_access")
    finally:
        await connection.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--megabytes", type=int, default=400)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args(argv)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with embedded_postgres() as database_url:
        asyncio.run(migrate(database_url))
        env = service_env(database_url, "http://127.0.0.1:9", WORKER_ENABLED="false")
        serve = [sys.executable, "-m", "tiktok_auth_service", "serve", "--workers", "1"]
        with running([*serve, "--port", str(port)], env, f"{url}/healthz") as process:
            print(f"{args.megabytes} MB bodies to POST /connect-sessions without a key")
            print("body       status           MB sent  RSS before  RSS after  after/before")
            for declared in (True, False):
                before = rss_mb(process.pid)
                status, sent = asyncio.run(big_body(port, args.megabytes, declared))
                after = rss_mb(process.pid)
                kind = "declared" if declared else "streamed"
                print(
                    f"{kind:9}  {status:15}  {sent:7}  {before:7.0f} MB {after:7.0f} MB  "
                    f"{after / before:.2f}"
                )
            started = time.monotonic()
            statuses = asyncio.run(anonymous_reads(url, args.reads))
            took = time.monotonic() - started
        # Stopped: the audit flushed what it had buffered on the way out.
        rows = asyncio.run(audit_rows(database_url))
    print(
        f"\n{args.reads} token reads with random keys and subjects in {took:.1f} s: "
        f"statuses {dict(statuses)}; audit rows written {rows} "
        f"({rows / args.reads:.3f} per read; recording every one would be 1.000)"
    )


if __name__ == "__main__":
    main()
