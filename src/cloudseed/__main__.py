"""``python -m cloudseed`` runs the CLI (how ``serve`` starts its tiers)."""

from cloudseed.cli.main import main

raise SystemExit(main())
