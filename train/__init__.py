"""bitplane.train."""
