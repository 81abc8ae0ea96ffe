"""turborec.compress: transforms of trained models that return normal models.

- whole models: :func:`compress_estimator` / :func:`compress_ranker` (a :class:`Compression`:
  quantized tables, int8 MLPs, pruned neurons, quantization-aware fine-tuning), :func:`load`
  (any artifact, transform records replayed), :func:`save_ranker`;
- distillation: :func:`distill_retrieval`, :func:`distill_ranker`, :func:`student_estimator`,
  :func:`student_ranker`;
- tables: :func:`quantize_embeddings` (fp16 / bf16 / int8 / int4), :func:`prune_rows_by_frequency`,
  :func:`mixed_dims_by_frequency`, :func:`fake_quantize_tables`;
- MLPs: :func:`quantize_mlp_dynamic` (int8 dynamic), :func:`prune_magnitude` (masked zeros),
  :func:`prune_neurons` (physically smaller layers);
- memory: :func:`model_nbytes`, :func:`net_memory`, :func:`measure_load_rss`;
- artifacts: :func:`transform_records`, :func:`prepare_for_load`, :func:`finish_load`, :class:`TransformReplay`.
"""

from turborec.compress._netwalk import TABLE_NAME_ATTR, TableRef, find_tables, transform_records
from turborec.compress.distill import (
    DistillConfig,
    distill_ranker,
    distill_retrieval,
    student_estimator,
    student_ranker,
)
from turborec.compress.estimator import (
    Compression,
    artifact_kind,
    compress_estimator,
    compress_ranker,
    fake_quantize_tables,
    load,
    save_ranker,
)
from turborec.compress.frequency import mixed_dims_by_frequency, prune_rows_by_frequency
from turborec.compress.memory import (
    LoadMemory,
    NetMemory,
    load_table_artifact,
    measure_load_rss,
    model_nbytes,
    net_memory,
    save_table_artifact,
)
from turborec.compress.prune import (
    enforce_masks,
    find_hidden_layers,
    mask_gradients,
    prune_magnitude,
    prune_neurons,
    remove_masks,
    sparsity,
)
from turborec.compress.quantize import quantize_embeddings, quantize_mlp_dynamic, tables_to_quantize
from turborec.compress.records import TransformReplay, finish_load, prepare_for_load

__all__ = [
    "TABLE_NAME_ATTR",
    "Compression",
    "DistillConfig",
    "LoadMemory",
    "NetMemory",
    "TableRef",
    "TransformReplay",
    "artifact_kind",
    "compress_estimator",
    "compress_ranker",
    "distill_ranker",
    "distill_retrieval",
    "enforce_masks",
    "fake_quantize_tables",
    "find_hidden_layers",
    "find_tables",
    "finish_load",
    "load",
    "load_table_artifact",
    "mask_gradients",
    "measure_load_rss",
    "mixed_dims_by_frequency",
    "model_nbytes",
    "net_memory",
    "prepare_for_load",
    "prune_magnitude",
    "prune_neurons",
    "prune_rows_by_frequency",
    "quantize_embeddings",
    "quantize_mlp_dynamic",
    "remove_masks",
    "save_ranker",
    "save_table_artifact",
    "sparsity",
    "student_estimator",
    "student_ranker",
    "tables_to_quantize",
    "transform_records",
]
