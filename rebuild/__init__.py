"""rebuild package."""
