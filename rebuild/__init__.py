"""The ``rebuild`` tool: replay projections into fresh tables, verify, diff, swap (SPEC §5)."""
