"""turborec.bench."""
