"""The asyncio driver: coalescing, results in order, errors, cancellation, both executors."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from turborec.serving.batching import BatchPolicy
from turborec.serving.driver import BatchDriver


def squares(batch_sizes: list[int]) -> object:
    def run(items: list[int]) -> list[int]:
        batch_sizes.append(len(items))
        x = np.asarray(items)
        return (x * x).tolist()  # a real (tiny) computation per batch

    return run


@pytest.mark.parametrize("executor", ["thread", "inline"])
def test_requests_submitted_together_share_one_call(executor: str) -> None:
    sizes: list[int] = []
    driver: BatchDriver[int, int] = BatchDriver(squares(sizes), BatchPolicy(max_batch=64), executor=executor)

    async def main() -> list[int]:
        out = await asyncio.gather(*(driver.submit(i) for i in range(20)))
        await driver.close()
        return list(out)

    assert asyncio.run(main()) == [i * i for i in range(20)]
    assert sizes == [20]


def test_batches_respect_max_batch_and_drain() -> None:
    sizes: list[int] = []
    driver: BatchDriver[int, int] = BatchDriver(squares(sizes), BatchPolicy(max_batch=8))

    async def main() -> list[int]:
        out = await asyncio.gather(*(driver.submit(i) for i in range(30)))
        await driver.close()
        return list(out)

    assert asyncio.run(main()) == [i * i for i in range(30)]
    assert max(sizes) <= 8 and sum(sizes) == 30


def test_an_error_reaches_every_request_of_its_batch() -> None:
    def broken(items: list[int]) -> list[int]:
        raise ValueError("model exploded")

    driver: BatchDriver[int, int] = BatchDriver(broken, BatchPolicy(max_batch=8))

    async def main() -> list[object]:
        out = await asyncio.gather(*(driver.submit(i) for i in range(5)), return_exceptions=True)
        await driver.close()
        return list(out)

    results = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in results)


def test_cancelled_requests_are_not_computed() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def slow(items: list[int]) -> list[int]:
        seen.append(list(items))
        gate.wait(5)
        return items

    driver: BatchDriver[int, int] = BatchDriver(slow, BatchPolicy(max_batch=8))

    async def main() -> None:
        first = asyncio.ensure_future(driver.submit(0))
        await asyncio.sleep(0.05)  # batch [0] is running; the next ones wait
        waiting = [asyncio.ensure_future(driver.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        waiting[1].cancel()
        gate.set()
        assert await first == 0
        assert [await waiting[0], await waiting[2]] == [1, 3]
        await driver.close()

    asyncio.run(main())
    assert seen == [[0], [1, 3]]


def test_wrong_result_count_is_an_error() -> None:
    driver: BatchDriver[int, int] = BatchDriver(lambda items: items[:-1], BatchPolicy(max_batch=8))

    async def main() -> None:
        with pytest.raises(RuntimeError, match="returned 1 results for 2"):
            await asyncio.gather(driver.submit(1), driver.submit(2))
        await driver.close()

    asyncio.run(main())
