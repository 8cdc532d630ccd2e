"""The demo's bundled sample events and their generator."""
