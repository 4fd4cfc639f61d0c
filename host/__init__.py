"""bitplane.host."""
