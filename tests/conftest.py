import os

# Tests run on small machines: keep torch to one thread unless a test says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")
