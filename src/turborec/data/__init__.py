"""turborec.data: interactions, vocabularies, loaders, the synthetic generator, filters, splits, protocols."""

from turborec.data.ctr import (
    CTRData,
    CTREncoder,
    DuplicateRowsWarning,
    RawCTR,
    SyntheticCTRConfig,
    iter_synthetic_ctr,
    read_avazu,
    read_criteo,
    read_libfm,
    shuffle_split,
    synthetic_ctr,
)
from turborec.data.filters import compact, dedupe, filter_min_rating, kcore
from turborec.data.interactions import Interactions, ItemFeatures
from turborec.data.loaders import LOADERS, load_csv, load_dataset, load_diginetica, load_movielens, load_parquet
from turborec.data.protocols import PROTOCOLS, Protocol, apply_protocol, get_protocol, register_protocol
from turborec.data.splits import Split, leave_last_out, random_split, split_counts, temporal_split
from turborec.data.synthetic import SyntheticConfig, generate_synthetic, synthetic
from turborec.data.vocab import Vocabulary

__all__ = [
    "LOADERS",
    "PROTOCOLS",
    "CTRData",
    "CTREncoder",
    "DuplicateRowsWarning",
    "Interactions",
    "ItemFeatures",
    "Protocol",
    "RawCTR",
    "Split",
    "SyntheticCTRConfig",
    "SyntheticConfig",
    "Vocabulary",
    "apply_protocol",
    "compact",
    "dedupe",
    "filter_min_rating",
    "generate_synthetic",
    "get_protocol",
    "iter_synthetic_ctr",
    "kcore",
    "leave_last_out",
    "load_csv",
    "load_dataset",
    "load_diginetica",
    "load_movielens",
    "load_parquet",
    "random_split",
    "read_avazu",
    "read_criteo",
    "read_libfm",
    "register_protocol",
    "shuffle_split",
    "split_counts",
    "synthetic",
    "synthetic_ctr",
    "temporal_split",
]
