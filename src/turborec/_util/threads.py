"""How many threads torch should use: the cores this process may run on, less those already busy.

torch defaults to one thread per core whatever else runs. On a loaded machine its threads then
wait on each other at every parallel region: a CTR fit that takes 10 s with one thread took
400-1,500 s with two on a busy two-core box (issue 16). The rule here:

1. an explicit request (``--threads N``) wins;
2. else ``OMP_NUM_THREADS`` when set (the user or a launcher already decided);
3. else the cores in this process's affinity mask (``os.sched_getaffinity``: what a container or
   ``taskset`` grants, not the whole host) minus the one-minute load average, rounded, at least 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from turborec.errors import ConfigError


def available_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def busy_cores() -> float:
    """Runnable processes on the machine (one-minute load average); 0 where the OS does not say."""
    try:
        return max(os.getloadavg()[0], 0.0)
    except (AttributeError, OSError):
        return 0.0


def default_threads(environ: Mapping[str, str] | None = None, cores: int | None = None,
                    load: float | None = None) -> int:
    """The thread count rule 2-3 above picks (``environ``/``cores``/``load`` are for tests)."""
    env = os.environ if environ is None else environ
    raw = env.get("OMP_NUM_THREADS", "").strip()
    if raw:
        try:
            return max(int(raw), 1)
        except ValueError:
            pass  # a malformed value: fall through to the measured rule, as OpenMP itself ignores it
    n = available_cores() if cores is None else cores
    busy = busy_cores() if load is None else load
    return max(1, min(n, n - round(busy)))


def pick_threads(requested: int | None) -> int:
    """``requested`` when given (must be >= 1), else :func:`default_threads`."""
    if requested is None:
        return default_threads()
    if requested < 1:
        raise ConfigError(f"--threads must be at least 1, got {requested}")
    return requested


def set_torch_threads(requested: int | None) -> int:
    """Pick the count and apply it to torch's intra-op pool (the one training and inference use)."""
    n = pick_threads(requested)
    import torch

    torch.set_num_threads(n)
    return n
