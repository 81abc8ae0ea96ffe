"""turborec.edge."""
