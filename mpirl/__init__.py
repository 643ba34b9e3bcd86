"""mpirl: reinforcement learning that trains on HPC clusters with MPI."""
__version__ = "0.1.0"
