"""The torchrun entry point of sharded training: ``python -m turborec.distributed.worker --spec JSON``.

Started once per rank by :func:`turborec.distributed.launch.launch`; joins the
process group from torchrun's environment, trains, and exits 0, or 2 with one
line on stderr for a user's mistake (bad data path, options...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

MODULE = "turborec.distributed.worker"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE)
    parser.add_argument("--spec", required=True, help="ShardedTrainSpec as JSON")
    args = parser.parse_args(argv)
    import logging
    import warnings

    import torch

    # TorchRec and torch.distributed warn about their own deprecations and planner heuristics on every
    # start; a user cannot act on them, so a worker's output is the plan, the epochs and the result
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    logging.getLogger("torch").setLevel(logging.ERROR)

    from turborec.distributed.env import process_group
    from turborec.distributed.spec import ShardedTrainSpec
    from turborec.distributed.train import train_sharded
    from turborec.errors import TurborecError

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        spec = ShardedTrainSpec.from_json(args.spec)
        with process_group(spec.backend, spec.device) as ctx:
            train_sharded(spec, ctx, log=lambda msg: print(msg, flush=True))
    except TurborecError as exc:
        print(f"turborec train: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
