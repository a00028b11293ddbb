"""``python -m optitop``."""

from optitop.cli import main

raise SystemExit(main())
