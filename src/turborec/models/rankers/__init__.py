"""CTR rankers: logistic regression, factorization machine, DLRM, DCN-V2 and DeepFM over (dense, sparse) rows.

Importing this package registers the kinds 'logreg', 'fm', 'dlrm', 'dcnv2' and 'deepfm'.
"""

from turborec.models.rankers.common import LinearTerms, RankerNet, SparseEmbeddings, build_ranker, mlp
from turborec.models.rankers.dcn import DCNv2, DCNv2Config
from turborec.models.rankers.deepfm import DeepFM, DeepFMConfig
from turborec.models.rankers.dlrm import DLRM, DLRMConfig
from turborec.models.rankers.fm import FactorizationMachine, FMConfig
from turborec.models.rankers.logreg import LogisticRegression, LogRegConfig, warm_start_from_logreg

__all__ = [
    "DLRM",
    "DCNv2",
    "DCNv2Config",
    "DLRMConfig",
    "DeepFM",
    "DeepFMConfig",
    "FMConfig",
    "FactorizationMachine",
    "LinearTerms",
    "LogRegConfig",
    "LogisticRegression",
    "RankerNet",
    "SparseEmbeddings",
    "build_ranker",
    "mlp",
    "warm_start_from_logreg",
]
