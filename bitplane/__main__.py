"""``python -m bitplane`` is the ``bitplane`` command."""
import sys

from bitplane.cli.main import main

sys.exit(main())
