"""A sweeper in a process of its own, for the multi-process retention tests.

    python tests/retention_worker.py URL BATCH_SIZE [PAUSE_SECONDS [wait]]

Prints ``progress <examined>`` after every batch (then sleeps ``PAUSE_SECONDS``, so that a test
can kill it between or during batches) and ``removed <count>`` at the end. With ``wait`` it
first connects, prints ``ready`` and waits for a line on stdin, so that a test can start
several workers' sweeps at the same moment however long each took to start.
"""

from __future__ import annotations

import asyncio
import sys

from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.engine import create_engine


async def main(url: str, batch_size: int, pause: float, wait: bool) -> None:
    engine = create_engine(url, pool_size=2, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine, ttl={"strategy": "delete", "default_ttl": 60})
        if wait:
            async with engine.connect():
                pass  # the first connection, made before the start line
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

        async def progress(examined: int, due: int) -> None:
            print(f"progress {examined}", flush=True)
            await asyncio.sleep(pause)

        removed = await saver.asweep_ttl(batch_size=batch_size, progress=progress)
        print(f"removed {removed}", flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(
        main(
            sys.argv[1],
            int(sys.argv[2]),
            float(sys.argv[3]) if len(sys.argv) > 3 else 0,
            len(sys.argv) > 4 and sys.argv[4] == "wait",
        )
    )
