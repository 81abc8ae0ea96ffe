"""turborec.distributed: sharded training (TorchRec / torch.distributed) and scale-out serving (Ray Serve).

Import the parts from their modules (nothing is imported here, so the optional
dependencies load only when used): ``launch`` / ``worker`` / ``train`` (``turborec
train --nproc N``), ``sharding`` and ``tables`` (TorchRec), ``tablewise``
(table-wise sharding on plain torch.distributed, the GPU path without TorchRec),
``checkpoint``, and ``ray_serve`` (``turborec serve ARTIFACT --ray``).
See docs/distributed.md.
"""
