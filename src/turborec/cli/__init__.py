"""turborec.cli."""
