"""Child process of the HTTP confirmation: serve one tuned artifact on 127.0.0.1 until terminated.

    python -m turborec.tune._server ARTIFACT PORT SLO_MS MAX_BATCH MAX_WAIT_MS EXECUTOR SHED_AT
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    artifact, port, slo, max_batch, max_wait, executor, shed_at = argv
    from turborec.serving.server import run_server
    from turborec.serving.settings import ServeSettings
    from turborec.tune.served import load_tuned_serving_model

    model, _ = load_tuned_serving_model(artifact)
    settings = ServeSettings(artifact=Path(artifact), host="127.0.0.1", port=int(port), slo_p99_ms=float(slo),
                             max_batch=int(max_batch), max_wait_ms=float(max_wait), executor=executor,
                             shed_at=float(shed_at), adaptive_tiers=False)
    run_server(settings, model)


if __name__ == "__main__":
    main(sys.argv[1:])
