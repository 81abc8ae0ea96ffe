"""turborec.models."""
