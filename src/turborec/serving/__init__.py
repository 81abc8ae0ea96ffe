"""turborec.serving."""
