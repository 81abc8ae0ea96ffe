"""turborec.metrics."""
