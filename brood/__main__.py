"""`python -m brood` is the `brood` command."""

from brood.cli import main

raise SystemExit(main())
