"""Tabular MDPs and distributed value / Q-value / policy iteration (``python -m mpirl.mdp``)."""
from mpirl.mdp.mdp import GridWorld, RandomMDP, TableMDP, Transitions, load_gym
from mpirl.mdp.solve import METHODS, Solution, solve

__all__ = ["GridWorld", "RandomMDP", "TableMDP", "Transitions", "load_gym", "METHODS",
           "Solution", "solve"]
