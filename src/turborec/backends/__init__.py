"""turborec.backends."""
