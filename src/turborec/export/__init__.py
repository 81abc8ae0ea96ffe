"""turborec.export."""
