"""Small helpers shared by every layer (L0: imports nothing else of turborec but errors)."""
