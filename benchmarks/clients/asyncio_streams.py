"""A minimal asyncio client: ``open_connection``, ``read()`` to EOF, decode."""

from __future__ import annotations

import asyncio

from _common import HOST, Job, Stopwatch, parse_args, report


async def fetch(port: int) -> str:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        data = await reader.read()
    finally:
        writer.close()
    return data.decode("utf-8")


async def work(job: Job) -> list[int]:
    if job.mode == "large":
        return [len(await fetch(job.port))]
    slots = asyncio.Semaphore(job.concurrency)

    async def one() -> int:
        async with slots:
            return len(await fetch(job.port))

    return list(await asyncio.gather(*(one() for _ in range(job.count))))


async def main(job: Job) -> None:
    watch = Stopwatch()
    sizes: list[int] = []
    if job.mode != "baseline":
        watch.start()
        sizes = await work(job)
        watch.stop()
    report(job, watch, sizes)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
