"""turborec.retrieval."""
