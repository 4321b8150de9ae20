"""hrmcode: build, measure and ship small code models based on the Hierarchical Reasoning Model."""

__version__ = "0.1.0"
