"""turborec.distributed."""
