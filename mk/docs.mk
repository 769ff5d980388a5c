# `make docs`: the documentation site (mkdocs-material over docs/, configured by mkdocs.yml).
#
# Include this file at the end of the main Makefile (it needs BIN and STAMP). The build is
# strict: a broken link, a missing page or a bad docstring reference fails it. The site is
# written to build/site.

ifeq ($(origin STAMP),undefined)
$(error mk/docs.mk needs the main Makefile's STAMP: include it at the end of the Makefile)
endif

ifndef DOCS_MK_INCLUDED
DOCS_MK_INCLUDED := 1

.PHONY: docs

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir build/site

endif # DOCS_MK_INCLUDED
