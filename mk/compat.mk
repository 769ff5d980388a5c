# `make compat`: the unmodified reference client (qiskit-ibm-runtime 0.11.2) against our server.
#
# The main Makefile includes this file at its end (after PYTHON, BIN and STAMP are defined), so
# the target is `make compat`. See compat/README.md.
#
# The reference lives in its own venv (.venv-compat): it needs qiskit-terra 0.24, numpy<2 and
# websocket-client 1.6.1, none of which belong in the main .venv. The server runs from the main
# .venv (`runtime-job serve`, installed with the server extra by $(STAMP)). This package is also
# installed there (editable, no extras; `-e .` in compat/requirements.txt, in the same pip call
# as the pins), for the leg that runs the reference's primitives on our service; the venv is
# brought up to date when compat/requirements.txt or pyproject.toml changes.

ifeq ($(origin STAMP),undefined)
$(error mk/compat.mk needs the main Makefile's STAMP: include it at the end of the Makefile)
endif

ifndef COMPAT_MK_INCLUDED
COMPAT_MK_INCLUDED := 1

PYTHON       ?= python3
COMPAT_VENV  := .venv-compat
COMPAT_BIN   := $(COMPAT_VENV)/bin
COMPAT_STAMP := $(COMPAT_VENV)/.installed
# Extra pytest arguments, e.g. `make compat COMPAT_ARGS="-k session -x"`.
COMPAT_ARGS  ?=

.PHONY: compat compat-setup compat-clean

$(COMPAT_STAMP): compat/requirements.txt pyproject.toml
	@test -x $(COMPAT_BIN)/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/python -m pip install --quiet --upgrade pip
	$(COMPAT_BIN)/python -m pip install --quiet -r compat/requirements.txt
	@touch $@

compat-setup: $(STAMP) $(COMPAT_STAMP)

# The environment is the one shared/spec/wire.md section 0 requires of the reference on
# loopback TLS: a throwaway self-signed certificate that the websocket trusts through
# WEBSOCKET_CLIENT_CA_BUNDLE (the reference does not pass verify=False to it), no
# REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE (they override verify=False), no proxy for loopback, and
# TZ=UTC (the reference converts times between local time and UTC).
compat: $(STAMP) $(COMPAT_STAMP)
	@tls=$$(mktemp -d "$${TMPDIR:-/tmp}/runtime-job-compat.XXXXXX") || exit 1; \
	$(COMPAT_BIN)/python compat/tls.py "$$tls" >/dev/null || { rm -rf "$$tls"; exit 1; }; \
	env -u REQUESTS_CA_BUNDLE -u CURL_CA_BUNDLE \
	    COMPAT_TLS_CERT="$$tls/cert.pem" \
	    COMPAT_TLS_KEY="$$tls/key.pem" \
	    WEBSOCKET_CLIENT_CA_BUNDLE="$$tls/cert.pem" \
	    NO_PROXY=127.0.0.1,localhost \
	    no_proxy=127.0.0.1,localhost \
	    TZ=UTC \
	    RUNTIME_JOB_BIN="$(CURDIR)/$(BIN)/runtime-job" \
	    $(COMPAT_BIN)/pytest compat --ignore=compat/latest -q $(COMPAT_ARGS); \
	status=$$?; rm -rf "$$tls"; exit $$status

compat-clean:
	rm -rf $(COMPAT_VENV)


# -- the "latest" leg (issue 21): the latest official client against the platform dialect ----
#
# qiskit-ibm-runtime 0.51 with qiskit 2.x lives in its own venv (.venv-latest, pins in
# compat/latest/requirements.txt, rebuilt when they change). It runs compat/latest against a
# `runtime-job serve` over TLS; the client trusts the throwaway certificate through
# REQUESTS_CA_BUNDLE (set by compat/latest/conftest.py with IAM_URL, GLOBAL_SEARCH_URL and
# GLOBAL_CATALOG_URL once the port is known). `make compat` runs this leg first, then the
# 0.11 leg (which ignores compat/latest).

LATEST_VENV  := .venv-latest
LATEST_BIN   := $(LATEST_VENV)/bin
LATEST_STAMP := $(LATEST_VENV)/.installed
# Extra pytest arguments of this leg, e.g. `make compat-latest LATEST_ARGS="-k session -x"`.
LATEST_ARGS  ?=

.PHONY: compat-latest compat-latest-clean

$(LATEST_STAMP): compat/latest/requirements.txt
	@test -x $(LATEST_BIN)/python || $(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_BIN)/python -m pip install --quiet --upgrade pip
	$(LATEST_BIN)/python -m pip install --quiet -r compat/latest/requirements.txt
	@touch $@

compat-latest: $(STAMP) $(LATEST_STAMP)
	@tls=$$(mktemp -d "$${TMPDIR:-/tmp}/runtime-job-latest.XXXXXX") || exit 1; \
	$(LATEST_BIN)/python compat/tls.py "$$tls" >/dev/null || { rm -rf "$$tls"; exit 1; }; \
	env COMPAT_TLS_CERT="$$tls/cert.pem" \
	    COMPAT_TLS_KEY="$$tls/key.pem" \
	    NO_PROXY=127.0.0.1,localhost \
	    no_proxy=127.0.0.1,localhost \
	    TZ=UTC \
	    RUNTIME_JOB_BIN="$(CURDIR)/$(BIN)/runtime-job" \
	    $(LATEST_BIN)/pytest compat/latest -c compat/latest/pytest.ini \
	        --rootdir compat/latest --confcutdir compat/latest -q $(LATEST_ARGS); \
	status=$$?; rm -rf "$$tls"; exit $$status

compat: compat-latest

compat-latest-clean:
	rm -rf $(LATEST_VENV)

endif # COMPAT_MK_INCLUDED
