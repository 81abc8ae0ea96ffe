"""Index spec strings: structure (what is built) apart from runtime knobs (how it is searched).

Grammar, a subset of FAISS's ``index_factory`` plus a params suffix::

    spec      := structure [ "|" param { "," param } ]
    structure := "Exact"                      numpy exact search (chunked matmul + partial sort)
               | "Flat"                       FAISS exact search
               | "HNSW<M>" [ ",Flat" | ",SQ8" ]
               | "IVF<nlist>," ( "Flat" | "SQ8" | "PQ<m>" [ "x<nbits>" ] | "PQ<m>x4fs" ) [ ",RFlat" ]
    param     := name "=" integer             efSearch (HNSW), nprobe and k_factor (IVF),
                                              query_batch / item_chunk (Exact)

``PQ<m>x4fs`` is FAISS's fast-scan PQ (4-bit codes scanned with SIMD lookups); ``,RFlat``
keeps the raw vectors too and re-ranks the best ``k_factor * k`` candidates exactly.

``str(parse_spec(s))`` is canonical: ``"HNSW32,Flat"`` becomes ``"HNSW32"`` and params are
sorted by name, so ``parse_spec(str(spec)) == spec`` for every spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from turborec.errors import ConfigError

FAMILIES = ("exact", "flat", "hnsw", "ivf")
# runtime knobs each family accepts; anything else in the params suffix is a ConfigError
PARAMS: Mapping[str, tuple[str, ...]] = {
    "exact": ("item_chunk", "query_batch"),
    "flat": (),
    "hnsw": ("efSearch",),
    "ivf": ("k_factor", "nprobe"),
}

_HNSW = re.compile(r"HNSW(\d+)")
_IVF = re.compile(r"IVF(\d+)")
_PQ = re.compile(r"PQ(\d+)(?:x(\d+))?(fs)?")
_PARAM = re.compile(r"([A-Za-z_]+)=(\d+)")


@dataclass(frozen=True)
class IndexSpec:
    """A parsed spec. ``family`` picks the implementation; ``encoding`` is how vectors are stored
    ("Flat", "SQ8", "PQ<m>" or "PQ<m>x<nbits>"); ``params`` are the runtime knobs set explicitly."""

    family: str
    encoding: str = "Flat"
    hnsw_m: int = 0
    nlist: int = 0
    refine: bool = False  # IVF only: re-rank candidates with the raw vectors (",RFlat")
    params: tuple[tuple[str, int], ...] = field(default=())

    @property
    def structure(self) -> str:
        """The spec without its params: what has to be rebuilt when it changes."""
        if self.family == "exact":
            return "Exact"
        if self.family == "flat":
            return "Flat"
        if self.family == "hnsw":
            return f"HNSW{self.hnsw_m}" + ("" if self.encoding == "Flat" else f",{self.encoding}")
        return f"IVF{self.nlist},{self.encoding}" + (",RFlat" if self.refine else "")

    @property
    def params_dict(self) -> dict[str, int]:
        return dict(self.params)

    @property
    def pq(self) -> tuple[int, int] | None:
        """(m, nbits) for a product-quantized encoding, else None."""
        match = _PQ.fullmatch(self.encoding)
        if match is None:
            return None
        return int(match.group(1)), int(match.group(2) or 8)

    def faiss_factory_string(self) -> str:
        """The string for ``faiss.index_factory`` (the structure; params are applied separately)."""
        if self.family == "exact":
            raise ConfigError("spec 'Exact' is turborec's numpy index and has no FAISS factory string")
        return self.structure

    def with_params(self, **params: int) -> IndexSpec:
        """A copy with ``params`` merged in (validated against the family's knobs)."""
        merged = {**self.params_dict, **params}
        return replace(self, params=_check_params(self, merged, self.structure))

    def __str__(self) -> str:
        if not self.params:
            return self.structure
        return self.structure + "|" + ",".join(f"{k}={v}" for k, v in self.params)


def _check_params(spec: IndexSpec, params: Mapping[str, object], where: str) -> tuple[tuple[str, int], ...]:
    allowed = tuple(p for p in PARAMS[spec.family] if p != "k_factor" or spec.refine)
    out: dict[str, int] = {}
    for name, value in params.items():
        if name not in allowed:
            known = ", ".join(allowed) or "none"
            raise ConfigError(f"index '{where}': unknown runtime parameter '{name}' (known: {known})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"index '{where}': parameter {name}={value!r} must be a positive integer")
        out[name] = value
    return tuple(sorted(out.items()))


def _parse_params(text: str, parsed: IndexSpec, spec: str) -> tuple[tuple[str, int], ...]:
    values: dict[str, object] = {}
    for item in text.split(","):
        match = _PARAM.fullmatch(item.strip())
        if match is None:
            raise ConfigError(f"index spec '{spec}': bad parameter '{item.strip()}' (expected name=integer)")
        values[match.group(1)] = int(match.group(2))
    return _check_params(parsed, values, spec)


def _positive(text: str, what: str, spec: str) -> int:
    value = int(text)
    if value < 1:
        raise ConfigError(f"index spec '{spec}': {what} must be >= 1, got {value}")
    return value


def _parse_encoding(token: str, spec: str, allowed: tuple[str, ...]) -> str:
    if token in ("Flat", "SQ8") and token in allowed:
        return token
    match = _PQ.fullmatch(token)
    if match is not None and "PQ" in allowed:
        m = _positive(match.group(1), "PQ sub-quantizers", spec)
        if match.group(3):
            if match.group(2) != "4":
                raise ConfigError(f"index spec '{spec}': fast-scan PQ is 4-bit only; write 'PQ{m}x4fs'")
            return f"PQ{m}x4fs"
        if match.group(2) is None:
            return f"PQ{m}"
        nbits = int(match.group(2))
        if not 1 <= nbits <= 16:
            raise ConfigError(f"index spec '{spec}': PQ bits must be within 1..16, got {nbits}")
        return f"PQ{m}" if nbits == 8 else f"PQ{m}x{nbits}"
    raise ConfigError(f"index spec '{spec}': unknown encoding '{token}' (expected one of {', '.join(allowed)})")


def parse_spec(spec: str | IndexSpec) -> IndexSpec:
    """Parse a spec string (see the module docstring); unknown specs raise :class:`ConfigError`."""
    if isinstance(spec, IndexSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"index spec must be a non-empty string, got {spec!r}")
    structure, _, params_text = spec.strip().partition("|")
    tokens = [t.strip() for t in structure.split(",")]
    head, rest = tokens[0], tokens[1:]
    if head in ("Exact", "Flat") and not rest:
        parsed = IndexSpec(family=head.lower())
    elif (match := _HNSW.fullmatch(head)) is not None and len(rest) <= 1:
        encoding = _parse_encoding(rest[0], spec, ("Flat", "SQ8")) if rest else "Flat"
        parsed = IndexSpec(family="hnsw", encoding=encoding, hnsw_m=_positive(match.group(1), "HNSW M", spec))
        if parsed.hnsw_m < 2:
            raise ConfigError(f"index spec '{spec}': HNSW M must be >= 2")
    elif (match := _IVF.fullmatch(head)) is not None and len(rest) in (1, 2):
        encoding = _parse_encoding(rest[0], spec, ("Flat", "SQ8", "PQ"))
        refine = len(rest) == 2
        if refine and (rest[1] != "RFlat" or encoding == "Flat"):
            raise ConfigError(f"index spec '{spec}': only ',RFlat' may follow a compressed IVF encoding (SQ8, PQ)")
        nlist = _positive(match.group(1), "IVF nlist", spec)
        parsed = IndexSpec(family="ivf", encoding=encoding, nlist=nlist, refine=refine)
    else:
        raise ConfigError(
            f"unknown index spec '{spec}' (expected e.g. 'Exact', 'Flat', 'HNSW32', 'HNSW32,SQ8', "
            "'IVF1024,Flat', 'IVF1024,PQ16', 'IVF1024,SQ8', 'IVF1024,PQ32x4fs,RFlat', optionally followed by "
            "'|nprobe=32' or '|efSearch=128')"
        )
    if params_text.strip():
        parsed = replace(parsed, params=_parse_params(params_text, parsed, spec))
    elif "|" in spec:
        raise ConfigError(f"index spec '{spec}': empty parameter list after '|'")
    return parsed


__all__ = ["FAMILIES", "PARAMS", "IndexSpec", "parse_spec"]
