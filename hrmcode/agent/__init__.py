"""Models acting in repositories: the agent loop (mini-swe-agent's protocol), its trajectories,
repository tasks at their buggy state, grading a model patch against pristine tests, and search
over attempts (best-of-N, tree search).

A floor between ``data``/``sandbox`` and ``eval``: it runs every command of an agent in a
``hrmcode.sandbox`` session and grades in a fresh sandbox run the agent never touched; ``eval swe``
(``hrmcode/eval/swe.py``) drives it with the eval model backends.
"""
