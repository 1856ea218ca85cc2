"""HEMS gateway core: protocol-free domain model, bus, store, planner and controller."""

__version__ = "0.1.0"
