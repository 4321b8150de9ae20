"""hrmcode's version, in a module of its own so the ground floor reads it without importing the
package's ``__init__`` (which re-exports ``open_dataset`` and so imports the ground floor itself)."""

__version__ = "0.1.0"
