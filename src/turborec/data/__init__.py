"""turborec.data: interactions, vocabularies, loaders, the synthetic generator, filters, splits, protocols."""

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
    "Interactions",
    "ItemFeatures",
    "Protocol",
    "Split",
    "SyntheticConfig",
    "Vocabulary",
    "apply_protocol",
    "compact",
    "dedupe",
    "filter_min_rating",
    "generate_synthetic",
    "get_protocol",
    "kcore",
    "leave_last_out",
    "load_csv",
    "load_dataset",
    "load_diginetica",
    "load_movielens",
    "load_parquet",
    "random_split",
    "register_protocol",
    "split_counts",
    "synthetic",
    "temporal_split",
]
