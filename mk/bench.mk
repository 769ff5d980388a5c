# `make bench`: our client against the reference client and the physical limit.
#
# The main Makefile includes this file at its end, after mk/compat.mk, whose $(COMPAT_STAMP)
# and $(COMPAT_BIN) build the reference's venv (.venv-compat). See bench/doc_header.md (the
# top of docs/benchmarks.md) for the method.
#
#   make bench          full run (about 10 minutes); writes docs/benchmarks.md and
#                       build/bench/benchmarks.json
#   make bench-quick    smoke run for CI (under 2 minutes once the venvs exist); writes
#                       build/bench/benchmarks-quick.md; fails only if a run fails, never
#                       on a timing
#   make bench BENCH_ARGS="--only status,listing --out /tmp/b.md"

ifeq ($(origin STAMP),undefined)
$(error mk/bench.mk needs the main Makefile's STAMP: include it at the end of the Makefile)
endif
ifeq ($(origin COMPAT_STAMP),undefined)
$(error mk/bench.mk needs mk/compat.mk (COMPAT_STAMP, COMPAT_BIN): include that first)
endif

ifndef BENCH_MK_INCLUDED
BENCH_MK_INCLUDED := 1

# Extra arguments for bench/run.py, e.g. BENCH_ARGS="--only streaming --workers 16".
BENCH_ARGS ?=

.PHONY: bench bench-quick

bench: $(STAMP) $(COMPAT_STAMP)
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS=\"$(BENCH_ARGS)\")" \
	    $(BIN)/python bench/run.py --compat-python $(COMPAT_BIN)/python $(BENCH_ARGS)

bench-quick: $(STAMP) $(COMPAT_STAMP)
	BENCH_COMMAND="make bench-quick$(if $(BENCH_ARGS), BENCH_ARGS=\"$(BENCH_ARGS)\")" \
	    $(BIN)/python bench/run.py --quick --compat-python $(COMPAT_BIN)/python $(BENCH_ARGS)

endif # BENCH_MK_INCLUDED
