"""turborec.tune."""
