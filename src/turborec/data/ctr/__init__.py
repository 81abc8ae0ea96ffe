"""CTR data: raw and encoded rows, the encoder, file loaders, splits and a synthetic generator."""

from turborec.data.ctr.containers import CTRData, RawCTR, shuffle_split
from turborec.data.ctr.encoder import CTREncoder
from turborec.data.ctr.loaders import DuplicateRowsWarning, read_avazu, read_criteo, read_libfm
from turborec.data.ctr.synthetic import SyntheticCTR, SyntheticCTRConfig, iter_synthetic_ctr, synthetic_ctr

__all__ = [
    "CTRData",
    "CTREncoder",
    "DuplicateRowsWarning",
    "RawCTR",
    "SyntheticCTR",
    "SyntheticCTRConfig",
    "iter_synthetic_ctr",
    "read_avazu",
    "read_criteo",
    "read_libfm",
    "shuffle_split",
    "synthetic_ctr",
]
