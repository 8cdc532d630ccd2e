"""Entry points (`bo`) and the one place that wires settings, engine and registry."""
