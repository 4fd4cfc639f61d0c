"""bitplane.core: the contract every side imports (errors, manifest, stream packing, register map,
weight-image format, file I/O). Depends on numpy and the standard library only."""
