# The two commands: `make train` and `make test`. Both set up .venv first (quick when nothing changed).
VENV   ?= .venv
NP     ?= 8
ARGS   ?=
PYTEST_ARGS ?=
MPI    ?= openmpi
PY     := $(VENV)/bin/python

.PHONY: setup train test bench clean
setup: $(VENV)/.mpirl-setup

$(VENV)/.mpirl-setup: setup.cfg pyproject.toml constraints.txt scripts/setup.sh mpirl/native/kernels.c
	VENV=$(VENV) bash scripts/setup.sh
	@touch $@

train: setup  ## PPO on CartPole-v1 over $(NP) ranks: make train NP=4 ARGS="--total-timesteps 200000"
	. $(VENV)/bin/activate && mpiexec -n $(NP) python -m mpirl.train $(ARGS)

test: setup  ## the whole suite (unit, MPI, end-to-end, Slurm), the MPI tier again under MPICH; MPI=mpich: all under MPICH
	VENV=$(VENV) MPI=$(MPI) bash scripts/run-tests.sh $(PYTEST_ARGS)

bench: setup  ## python -m mpirl.bench: figures as JSON + table under bench-results/ (installs the bench extra: SB3, the comparisons' other side)
	$(PY) -m pip install -q -c constraints.txt -e '.[bench]'
	$(PY) -m mpirl.bench $(ARGS)

clean:
	rm -rf $(VENV) $(VENV)-mpich build *.egg-info .pytest_cache
