# kernels/metal/metal.mk - the Metal backend's part of the build (included by the Makefile).
#
#   macOS:  kernels/metal/backend_metal.m + metal_ops.c join the library, SS_WITH_METAL is
#           defined, and Metal, MetalPerformanceShaders, Foundation (and Accelerate) are linked.
#           The kernels' source (kernels/metal/*.metal) is embedded in the binary as a C string
#           ($(BUILD)/kernels/metal/metal_source.h) and compiled at run time.
#   Every platform: the test binaries tests/test_metal_*.c link the kernels compiled as C++17
#           (kernels/metal/emu) with the grid emulator, and a copy of src/backend.c built with
#           the emulated backend registered as "mps".  `make check-metal` runs just those.
METAL_CXX      ?= $(CXX)
METAL_CXXFLAGS := -std=c++17 -Wall -Wextra -Werror $(CFLAGS) $(SANFLAGS) -pthread
METAL_SRC      := kernels/metal/common.metal kernels/metal/elementwise.metal kernels/metal/reduce.metal \
                  kernels/metal/gemm.metal kernels/metal/conv.metal
METAL_EMU_DIR  := $(BUILD)/metal-emu
METAL_EMU_OBJS := $(METAL_EMU_DIR)/backend.o $(METAL_EMU_DIR)/metal_ops.o $(METAL_EMU_DIR)/backend_metal_emu.o \
                  $(METAL_EMU_DIR)/emu.o $(METAL_EMU_DIR)/kernels_emu.o
METAL_TEST_BINS := $(BUILD)/tests/test_metal_ops $(BUILD)/tests/test_metal_htdemucs

$(METAL_EMU_DIR)/backend.o: src/backend.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DSS_WITH_METAL -Dss_backend_metal=ss_backend_metal_emu -MMD -MP -c $< -o $@

$(METAL_EMU_DIR)/metal_ops.o: kernels/metal/metal_ops.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(METAL_EMU_DIR)/backend_metal_emu.o: kernels/metal/emu/backend_metal_emu.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(METAL_EMU_DIR)/%.o: kernels/metal/emu/%.cpp
	@mkdir -p $(dir $@)
	$(METAL_CXX) $(METAL_CXXFLAGS) -MMD -MP -c $< -o $@

$(METAL_TEST_BINS): $(BUILD)/tests/%: tests/%.c $(METAL_EMU_OBJS) $(LIBSS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -MMD -MP -c $< -o $@.o
	$(METAL_CXX) $(ALL_LDFLAGS) -o $@ $@.o $(METAL_EMU_OBJS) $(LIBSS) $(LIBS)
	@rm -f $@.o

.PHONY: check-metal
check-metal: $(METAL_TEST_BINS)
	@pass=0; fail=0; for t in $(METAL_TEST_BINS); do \
	    out=$$(SS_ROOT=$(CURDIR) $$t 2>$$t.err); rc=$$?; \
	    printf '%s\n' "$$out" | grep -E '^(PASS|FAIL|SKIP|#) ' | sed "s|^|  [$${t##*/}] |"; \
	    p=$$(printf '%s\n' "$$out" | grep -c '^PASS '); f=$$(printf '%s\n' "$$out" | grep -c '^FAIL '); \
	    if [ $$rc -ne 0 ] && [ $$f -eq 0 ]; then f=1; echo "  [$${t##*/}] FAIL exited with status $$rc"; tail -n 20 $$t.err; fi; \
	    pass=$$((pass + p)); fail=$$((fail + f)); rm -f $$t.err; \
	done; echo "$$pass passed, $$fail failed"; [ $$fail -eq 0 ]

-include $(METAL_EMU_OBJS:.o=.d)

# ---- macOS: the real backend ------------------------------------------------------------
ifeq ($(UNAME_S),Darwin)
METAL ?= 1
endif
METAL ?= 0
ifeq ($(METAL),1)
METAL_LIB_OBJS := $(BUILD)/kernels/metal/metal_ops.o $(BUILD)/kernels/metal/backend_metal.o
ALL_CFLAGS += -DSS_WITH_METAL
LIBS += -framework Metal -framework MetalPerformanceShaders -framework Foundation
$(LIBSS): $(METAL_LIB_OBJS)

$(BUILD)/kernels/metal/metal_source.h: kernels/metal/embed.sh kernels/metal/ss_metal_params.h $(METAL_SRC)
	@mkdir -p $(dir $@)
	sh kernels/metal/embed.sh $@ kernels/metal/ss_metal_params.h $(METAL_SRC)

$(BUILD)/kernels/metal/backend_metal.o: kernels/metal/backend_metal.m $(BUILD)/kernels/metal/metal_source.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -x objective-c -fno-objc-arc -I$(BUILD)/kernels/metal -MMD -MP -c $< -o $@

-include $(METAL_LIB_OBJS:.o=.d)
endif
