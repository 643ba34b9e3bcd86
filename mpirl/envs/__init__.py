"""Environments: construction by id (make), a rank's vector env (vec), observation statistics merged
across ranks (normalize), episode statistics (episodes), evaluation (evaluate), and a vector env's
exact state for bitwise resume (state).

Import from the modules: this package imports nothing itself, so the checks made before training
(make) load without torch.
"""
