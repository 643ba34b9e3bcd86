"""Everything that speaks MPI: the world and its grid, collectives, point-to-point messages."""
from mpirl.comm.world import Grid, World, install_abort_on_error

__all__ = ["Grid", "World", "install_abort_on_error"]
