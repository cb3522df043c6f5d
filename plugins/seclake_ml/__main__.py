"""``python -m seclake_ml``: the package's command line."""

from seclake_ml.cli import main

raise SystemExit(main())
