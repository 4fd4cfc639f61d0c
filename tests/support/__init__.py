"""Helpers shared by the test modules (networks, stream drivers, references); never imported by bitplane."""
