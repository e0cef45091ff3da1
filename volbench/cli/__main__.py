"""``python -m volbench.cli``: the ``volbench`` command."""
from volbench.cli import main

raise SystemExit(main())
