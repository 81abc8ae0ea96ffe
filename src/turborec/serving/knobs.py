"""What a tuned artifact tells the service: ``ServingKnobs`` in the manifest's ``config.serving`` section.

``turborec tune`` writes them (the user-tower backend, the retrieval index spec, micro-batching and
admission); ``turborec serve`` reads them back, so the service runs what the search measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from turborec.errors import ConfigError

SERVICE_EXACT = "Exact"  # the service's own scoring: one matmul against every item vector (no Index object)
SERVING_KEY = "serving"  # manifest config section holding the tuned settings
INDEX_DIR = "index"  # where a tuned artifact keeps its built index


@dataclass(frozen=True)
class ServingKnobs:
    """What the service is told: the user-tower backend, the retrieval index and micro-batching."""

    backend: str = "torch-eager"
    index: str = SERVICE_EXACT
    max_batch: int = 64
    max_wait_ms: float = 1.0
    executor: str = "thread"
    shed_at: float = 0.8  # admission: shed when the expected latency passes this fraction of the SLO

    def with_(self, **changes: Any) -> ServingKnobs:
        return ServingKnobs(**{**asdict(self), **changes})

    @property
    def batching_label(self) -> str:
        shed = "" if self.shed_at == ServingKnobs.shed_at else f"/shed{self.shed_at:g}"
        return f"b{self.max_batch}/w{self.max_wait_ms:g}/{self.executor}{shed}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def serving_section(art_config: Mapping[str, Any]) -> ServingKnobs:
    """The tuned serving knobs a manifest records (defaults where it records none)."""
    section = art_config.get(SERVING_KEY) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"manifest '{SERVING_KEY}' must be a mapping, got {type(section).__name__}")
    known = ServingKnobs().to_dict()
    return ServingKnobs(**{k: section[k] for k in known if k in section})


__all__ = ["INDEX_DIR", "SERVICE_EXACT", "SERVING_KEY", "ServingKnobs", "serving_section"]
