"""turborec.compress."""
