"""The immutable event log: decoding, redaction, identity, storage, dead letters, sources."""
