"""turborec.train."""
