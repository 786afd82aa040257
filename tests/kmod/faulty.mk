# Builds tests/kmod/provium_faulty.c out of tree, like examples/kmod.mk,
# against the default kernel (build/kmod-faulty/provium_faulty.ko) and the
# debug kernel (build/kmod-faulty-debug/, instrumented for KASAN and UBSAN).
FAULTY_DIR := $(B)/kmod-faulty
FAULTY_KO  := $(FAULTY_DIR)/provium_faulty.ko

FAULTY_DEBUG_DIR := $(B)/kmod-faulty-debug
FAULTY_DEBUG_KO  := $(FAULTY_DEBUG_DIR)/provium_faulty.ko

.PHONY: kmod-faulty
kmod-faulty: $(FAULTY_KO) $(FAULTY_DEBUG_KO)

$(FAULTY_DEBUG_KO): MAKEOVERRIDES :=
$(FAULTY_DEBUG_KO): tests/kmod/provium_faulty.c tests/kmod/Kbuild $(B)/image/debug-kernel-build/Module.symvers
	@mkdir -p $(FAULTY_DEBUG_DIR)
	@cp tests/kmod/provium_faulty.c tests/kmod/Kbuild $(FAULTY_DEBUG_DIR)/
	@echo "  KMOD    $@"
	@$(MAKE) --no-print-directory -s -C $(B)/image/debug-kernel-build M=$(CURDIR)/$(FAULTY_DEBUG_DIR) modules

$(FAULTY_KO): MAKEOVERRIDES :=
$(FAULTY_KO): tests/kmod/provium_faulty.c tests/kmod/Kbuild $(KMOD_DIR)/.kernel
	@mkdir -p $(FAULTY_DIR)
	@cp tests/kmod/provium_faulty.c tests/kmod/Kbuild $(FAULTY_DIR)/
	@echo "  KMOD    $@"
	@$(MAKE) --no-print-directory -s -C $(KMOD_KDIR) M=$(CURDIR)/$(FAULTY_DIR) modules
