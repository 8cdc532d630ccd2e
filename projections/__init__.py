"""Versioned projections of the event log: pure folds, their tables, checkpoints and runner.

Modules: ``lww`` (last-writer-wins), one module per projection (``ledger_entries``,
``payment_orders``, ``pairs``), ``registry`` (versions in code), ``store`` (SQL tables,
views, checkpoints), ``source`` (reading the log), ``runner`` (the live runner),
``checksum``, ``status``, ``memory`` (the same folds without a database).
"""
