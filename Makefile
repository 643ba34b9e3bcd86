# The two commands: `make train` and `make test`. Both set up .venv first (quick when nothing changed).
VENV   ?= .venv
NP     ?= 8
ARGS   ?=
PYTEST_ARGS ?=
PY     := $(VENV)/bin/python

# Open MPI refuses root and more ranks than cores unless told (see scripts/setup.sh).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export OMPI_MCA_mpi_yield_when_idle := 1

.PHONY: setup train test bench clean
setup: $(VENV)/.mpirl-setup

$(VENV)/.mpirl-setup: setup.cfg pyproject.toml constraints.txt scripts/setup.sh mpirl/native/kernels.c
	VENV=$(VENV) bash scripts/setup.sh
	@touch $@

train: setup  ## PPO on CartPole-v1 over $(NP) ranks: make train NP=4 ARGS="--total-timesteps 200000"
	PATH=$(abspath $(VENV))/bin:$$PATH mpirun -n $(NP) $(PY) -m mpirl.train $(ARGS)

test: setup  ## the whole suite: unit, MPI, end-to-end and Slurm tests
	VENV=$(VENV) bash scripts/run-tests.sh $(PYTEST_ARGS)

bench: setup  ## python -m mpirl.bench: figures as JSON + table under bench-results/
	$(PY) -m mpirl.bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
