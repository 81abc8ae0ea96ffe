"""Backend tests: a persistent Inductor cache under the repo (``.cache/`` is gitignored)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# torch.compile is 10-15 s cold on CPU; a persistent kernel cache makes reruns a few seconds
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(REPO / ".cache" / "inductor"))
