"""bitplane.sim."""
