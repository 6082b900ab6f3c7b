"""Allow ``python -m edgehive``."""

from edgehive.cli import main

raise SystemExit(main())
