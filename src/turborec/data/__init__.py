"""turborec.data."""
