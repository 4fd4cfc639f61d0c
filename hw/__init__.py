"""bitplane.hw."""
