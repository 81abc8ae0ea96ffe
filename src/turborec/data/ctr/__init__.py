"""CTR data: raw and encoded rows, the encoder, file loaders, splits and a synthetic generator."""

from turborec.data.ctr.containers import CTRData, RawCTR, row_fingerprints, shuffle_split
from turborec.data.ctr.encoder import CTREncoder
from turborec.data.ctr.libfm_fields import LibfmFields, check_libfm_positions
from turborec.data.ctr.loaders import (
    DuplicateRowsWarning,
    iter_avazu,
    iter_criteo,
    iter_libfm,
    read_avazu,
    read_criteo,
    read_libfm,
)
from turborec.data.ctr.synthetic import SyntheticCTR, SyntheticCTRConfig, iter_synthetic_ctr, synthetic_ctr

__all__ = [
    "CTRData",
    "CTREncoder",
    "DuplicateRowsWarning",
    "LibfmFields",
    "RawCTR",
    "SyntheticCTR",
    "SyntheticCTRConfig",
    "check_libfm_positions",
    "iter_avazu",
    "iter_criteo",
    "iter_libfm",
    "iter_synthetic_ctr",
    "read_avazu",
    "read_criteo",
    "read_libfm",
    "row_fingerprints",
    "shuffle_split",
    "synthetic_ctr",
]
