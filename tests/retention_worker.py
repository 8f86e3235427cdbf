"""A sweeper in a process of its own, for the multi-process retention tests.

    python tests/retention_worker.py URL BATCH_SIZE [PAUSE_SECONDS]

Prints ``progress <examined>`` after every batch (then sleeps ``PAUSE_SECONDS``, so that a test
can kill it between or during batches) and ``removed <count>`` at the end.
"""

from __future__ import annotations

import asyncio
import sys

from langgraph_sqlalchemy import AsyncSQLAlchemySaver
from langgraph_sqlalchemy.engine import create_engine


async def main(url: str, batch_size: int, pause: float) -> None:
    engine = create_engine(url, pool_size=2, max_overflow=0)
    try:
        saver = AsyncSQLAlchemySaver(engine, ttl={"strategy": "delete", "default_ttl": 60})

        async def progress(examined: int, due: int) -> None:
            print(f"progress {examined}", flush=True)
            await asyncio.sleep(pause)

        removed = await saver.asweep_ttl(batch_size=batch_size, progress=progress)
        print(f"removed {removed}", flush=True)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0))
