# Builds the example kernel module examples/kmod/provium_demo.c out of tree
# against the default image's kernel (build/image/kernel-build, made by
# `make image`), producing build/kmod/provium_demo.ko.
#
# Include this from the top-level Makefile after B is defined:
#     -include examples/kmod.mk
# or use it on its own:
#     make -f examples/kmod.mk kmod
#
# The sources are copied to build/kmod/ and Kbuild runs there, so the source
# directory never collects build products. Kbuild is only invoked when a
# source or the kernel tree changed.

B ?= build

# Including this file must not change the includer's default goal.
KMOD_SAVED_GOAL := $(.DEFAULT_GOAL)

KMOD_SRC_DIR := examples/kmod
KMOD_DIR     := $(B)/kmod
KMOD_KDIR    ?= $(B)/image/kernel-build
KMOD_FILES   := Kbuild provium_demo.c provium_demo.h provium_demo_xform.h provium_demo_kunit.c
KMOD_COPIES  := $(addprefix $(KMOD_DIR)/,$(KMOD_FILES))
KMOD_KO      := $(KMOD_DIR)/provium_demo.ko
KMOD_MODINFO ?= $(firstword $(shell command -v modinfo 2>/dev/null) /usr/sbin/modinfo /sbin/modinfo)

.PHONY: kmod kmod-clean kmod-force

kmod: $(KMOD_KO)

$(KMOD_COPIES): $(KMOD_DIR)/%: $(KMOD_SRC_DIR)/%
	@mkdir -p $(@D)
	@cp $< $@

# Records which kernel tree the module is built for; rewritten (and so
# forcing a rebuild) only when build/image/kernel-build points elsewhere or
# the kernel release changed.
$(KMOD_DIR)/.kernel: kmod-force
	@test -f $(KMOD_KDIR)/Module.symvers || \
	  { echo "kmod: $(KMOD_KDIR) is not a built kernel tree; run 'make image' first" >&2; exit 1; }
	@mkdir -p $(@D)
	@k="$$(readlink -f $(KMOD_KDIR)) $$(cat $(KMOD_KDIR)/include/config/kernel.release)"; \
	  [ "$$(cat $@ 2>/dev/null)" = "$$k" ] || echo "$$k" > $@

# Command-line variables of the outer make (e.g. CC=clang) must not leak into
# Kbuild: the module has to be built exactly like the kernel.
$(KMOD_KO): MAKEOVERRIDES :=
$(KMOD_KO): $(KMOD_COPIES) $(KMOD_DIR)/.kernel
	@echo "  KMOD    $@"
	@$(MAKE) --no-print-directory -s -C $(KMOD_KDIR) M=$(CURDIR)/$(KMOD_DIR) modules
	@vm="$$($(KMOD_MODINFO) -F vermagic $@)"; \
	  if [ -z "$$vm" ] || ! grep -qaF -- "$$vm" $(KMOD_KDIR)/vmlinux; then \
	    echo "kmod: vermagic '$$vm' of $@ does not match $(KMOD_KDIR)/vmlinux" >&2; \
	    rm -f $@; exit 1; \
	  fi
	@touch $@

kmod-clean:
	rm -rf $(KMOD_DIR)

.DEFAULT_GOAL := $(KMOD_SAVED_GOAL)
