"""bitplane.gen."""
