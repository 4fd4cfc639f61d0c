"""bitplane.cli: the ``bitplane`` command, one module per subcommand, on top of everything else."""
