"""Stopping background tasks reliably.

On Python 3.11, ``asyncio.wait_for`` (used inside redis-py for every socket write, and
by engine.io) swallows a cancellation that arrives as the awaited operation completes:
the task carries on as if never cancelled, and ``task.cancel(); await task`` waits
forever. It made graceful shutdown hang under load until SIGKILL. ``stop_tasks``
cancels again until the tasks end, and gives up (logging) after a bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

# A cancelled task is cancelled again at this interval until it ends.
RECANCEL_INTERVAL_S = 0.05
# stop_tasks gives up (and logs) after this long.
STOP_TIMEOUT_S = 5.0


async def stop_tasks(tasks: Iterable[asyncio.Task[Any]], log: logging.Logger) -> None:
    """Cancel ``tasks`` and wait until they have ended. A cancellation of the caller
    propagates."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    finished = {task for task in tasks if task.done()}
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pending:
        for task in pending:
            task.cancel()
        done, pending = await asyncio.wait(pending, timeout=RECANCEL_INTERVAL_S)
        finished |= done
        if pending and time.monotonic() > deadline:
            log.error("tasks did not stop: %s", sorted(t.get_name() for t in pending))
            break
    for task in finished:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())
