"""Request and response bodies (pydantic), built per settings so limits show in the OpenAPI schema.

Ids may be sent as strings or integers; they are strings from here on.
Unknown fields are refused (422), as are k outside 1..max_k and lists past
their bounds. Types are strict: ``k`` is a JSON integer (not ``true``, ``"10"``
or ``10.5``), flags are JSON booleans (not ``"no"`` or ``0``), and an event's
``ts`` is a finite number of seconds since the epoch between 2000-01-01 and a
day from now (not ``true``, ``Infinity``, ``1e309`` or milliseconds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from turborec.serving.settings import ServeSettings

EVENT_KINDS = ("view", "click", "purchase")


def _id_to_str(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


EARLIEST_TS = 946_684_800.0  # 2000-01-01: older event times are units mistakes or junk
FUTURE_SLACK_S = 86_400.0  # clocks disagree, but not by more than a day


def _not_in_the_future(ts: float | None) -> float | None:
    if ts is not None and ts > time.time() + FUTURE_SLACK_S:
        raise ValueError("ts is more than a day in the future (seconds since the epoch expected, not milliseconds)")
    return ts


Timestamp = Annotated[
    float | None,
    Field(None, ge=EARLIEST_TS, strict=True, allow_inf_nan=False,
          description="seconds since the epoch (2000-01-01 .. now + 1 day); default: now"),
    AfterValidator(_not_in_the_future),
]


class ScoredItem(BaseModel):
    item: str
    score: float


class RecommendResponse(BaseModel):
    items: list[ScoredItem]
    model_version: str
    tier: str = Field(description="serving tier that answered: full, fewer-candidates, ..., popular")
    user_known: bool = Field(description="false: the user id is not in the model; served from live history")


class SimilarResponse(BaseModel):
    item: str
    items: list[ScoredItem]
    model_version: str


class ScoreResponse(BaseModel):
    probabilities: list[float] = Field(description="click probability of each row, in request order")
    model_version: str
    tier: str = Field(description="serving tier that answered: full, cheap-ranker (first-order term) or popular (prior)")


class EventResponse(BaseModel):
    stored: bool
    known_item: bool


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    artifact: str | None = Field(None, max_length=4096, description="artifact directory; default: the one served")


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str


class ErrorResponse(BaseModel):
    detail: Any


@dataclass(frozen=True)
class Schemas:
    recommend: type[BaseModel]
    event: type[BaseModel]
    score: type[BaseModel]


def build_schemas(settings: ServeSettings) -> Schemas:
    max_k, max_recent, max_exclude = settings.max_k, settings.max_recent_items, settings.max_exclude
    Id = Annotated[str, BeforeValidator(_id_to_str), StringConstraints(min_length=1, max_length=settings.max_id_length)]
    max_rows = settings.max_score_rows

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user: Id | None = Field(None, description="user id; null or absent: anonymous (use recent_items)")
        recent_items: list[Id] = Field(
            default_factory=list, max_length=max_recent,
            description="items the user just interacted with, oldest first (added to the stored history)",
        )
        k: int = Field(10, ge=1, le=max_k, strict=True, description="how many items to return")
        exclude: list[Id] = Field(default_factory=list, max_length=max_exclude, description="items never to return")
        exclude_seen: bool = Field(True, strict=True, description="drop items the user already interacted with")

    class EventRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        user: Id
        item: Id
        kind: Literal["view", "click", "purchase"] = "view"
        ts: Timestamp = None

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rows: list[dict[Annotated[str, StringConstraints(max_length=256)], str | int | float | None]] = Field(
            ..., min_length=1, max_length=max_rows,
            description="rows of raw feature values by feature name (the names the ranker was trained on); "
            "an absent feature or null is a missing value",
        )

    return Schemas(recommend=RecommendRequest, event=EventRequest, score=ScoreRequest)
