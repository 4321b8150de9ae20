"""Structured per-test reports of the test frameworks the sandbox runs, read outside the tested code.

``pytest_report`` runs pytest with hrmcode's own reporter plugin (``pytest_plugin.py``, shipped into
the sandbox as a file) and reads the nonce-tagged report it writes; ``validate``, the repository bug
validation and polyglot's Python route all judge pytest through it. What code inside a framework's
process could still forge is stated in each module.
"""
