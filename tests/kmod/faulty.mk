# Builds tests/kmod/provium_faulty.c out of tree against the default image's
# kernel, like examples/kmod.mk, into build/kmod-faulty/provium_faulty.ko.
FAULTY_DIR := $(B)/kmod-faulty
FAULTY_KO  := $(FAULTY_DIR)/provium_faulty.ko

.PHONY: kmod-faulty
kmod-faulty: $(FAULTY_KO)

$(FAULTY_KO): MAKEOVERRIDES :=
$(FAULTY_KO): tests/kmod/provium_faulty.c tests/kmod/Kbuild $(KMOD_DIR)/.kernel
	@mkdir -p $(FAULTY_DIR)
	@cp tests/kmod/provium_faulty.c tests/kmod/Kbuild $(FAULTY_DIR)/
	@echo "  KMOD    $@"
	@$(MAKE) --no-print-directory -s -C $(KMOD_KDIR) M=$(CURDIR)/$(FAULTY_DIR) modules
