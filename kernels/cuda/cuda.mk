# kernels/cuda/cuda.mk - the CUDA backend's part of the build (included by the Makefile).
#
#   kernels/cuda/*.cu and the models' fused kernels models/*/*.cu -> $(BUILD)/libstemsplit-cuda.so,
#   loaded at run time by src/backend.c.
#   Built when nvcc is found (PATH or /usr/local/cuda/bin) or with CUDA=1; CUDA=0 never.
#   CUDA_ARCHS (default "80 90") picks the SASS targets; PTX for the last one is embedded.
#   The main binary links no CUDA library, so a CUDA build still runs with --device cpu
#   on a machine without a GPU or driver.
#
#   make bundle      relocatable folder $(BUNDLE): bin/stemsplit + lib/ (the module and the
#                    non-system shared libraries, rpath $ORIGIN/../lib); BUNDLE_CUDA_LIBS=0
#                    leaves cuBLAS/cuFFT out (the module then finds them in $(CUDA_HOME)/lib64,
#                    beside itself, or via LD_LIBRARY_PATH).
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
ifeq ($(origin CUDA),undefined)
CUDA := $(if $(NVCC),1,0)
endif
CUDA_ARCHS ?= 80 90
BUNDLE ?= dist/stemsplit-$(VERSION)
BUNDLE_CUDA_LIBS ?= 1
SS_LIBDIR := $(PREFIX)/lib/stemsplit
CUDA_MOD :=
ifeq ($(CUDA),1)
ifeq ($(NVCC),)
$(error CUDA=1 but nvcc was not found (put it on PATH or set NVCC=/path/to/nvcc))
endif
CUDA_HOME ?= $(patsubst %/bin/,%,$(dir $(realpath $(NVCC))))
CUDA_MOD  := $(BUILD)/libstemsplit-cuda.so
CUDA_SRCS := $(wildcard kernels/cuda/*.cu) $(wildcard models/*/*.cu)
CUDA_OBJS := $(CUDA_SRCS:%.cu=$(BUILD)/%.o)
CUDA_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
	-gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))
NVCCFLAGS ?= -O3
CUDA_FLAGS := -std=c++17 $(NVCCFLAGS) $(CUDA_GENCODE) \
	-Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Werror -Werror all-warnings -Isrc
CUDA_DEFS := -DSS_WITH_CUDA -DSS_CUDA_BUILD_DIR='"$(abspath $(BUILD))"' -DSS_LIBDIR='"$(SS_LIBDIR)"'

$(BUILD)/src/backend.o: ALL_CFLAGS += $(CUDA_DEFS)
stemsplit: $(CUDA_MOD)
tests: $(CUDA_MOD)

$(BUILD)/kernels/cuda/%.o: kernels/cuda/%.cu src/backend.h src/error.h $(wildcard kernels/cuda/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(CUDA_FLAGS) -c $< -o $@

# a model's kernels find cuda_internal.h through -Ikernels/cuda and their own headers beside them
$(BUILD)/models/%.o: models/%.cu src/backend.h src/error.h $(wildcard kernels/cuda/*.h) $(wildcard models/*/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(CUDA_FLAGS) -Ikernels/cuda -c $< -o $@

$(CUDA_MOD): $(CUDA_OBJS)
	$(NVCC) -shared -cudart static -o $@ $^ -L$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcufft \
	    -Xlinker -rpath -Xlinker '$$ORIGIN:$$ORIGIN/../lib:$(CUDA_HOME)/lib64'
endif

# backend.o depends on whether the CUDA stub is compiled in
$(BUILD)/src/backend.o: $(BUILD)/cuda-$(CUDA).flag
$(BUILD)/cuda-$(CUDA).flag:
	@mkdir -p $(dir $@)
	@rm -f $(BUILD)/cuda-*.flag
	@touch $@

.PHONY: bundle install-cuda
install: install-cuda
install-cuda: stemsplit
	@if [ -n "$(CUDA_MOD)" ]; then install -d $(DESTDIR)$(SS_LIBDIR) && \
	    install -m 755 $(CUDA_MOD) $(DESTDIR)$(SS_LIBDIR)/libstemsplit-cuda.so; fi

bundle: $(CLI_OBJ) $(LIBSS) $(CUDA_MOD)
	rm -rf $(BUNDLE)
	mkdir -p $(BUNDLE)/bin $(BUNDLE)/lib
	$(CC) $(ALL_LDFLAGS) -Wl,--disable-new-dtags,-rpath,'$$ORIGIN/../lib' -o $(BUNDLE)/bin/stemsplit \
	    $(CLI_OBJ) $(LIBSS) $(LIBS)
	sh scripts/bundle-libs.sh $(BUNDLE) $(BUNDLE_CUDA_LIBS) $(BUNDLE)/bin/stemsplit $(CUDA_MOD)

# ---- every platform: the CUDA kernels on the CPU (kernels/cuda/emu) -------------------------
# kernels/cuda/*.cu and *.h compiled as C++17 (after rewrite.sed) against the emulator's CUDA
# headers, linked into test binaries with a copy of src/backend.c whose "cuda" entry is
# that emulated backend: tests/test_cuda_ops.c as test_cuda_emu_ops, and the HTDemucs,
# RoFormer, MDX23C, LarsNet and DeepFilterNet fixtures' forward passes (tests/test_cuda_emu_htdemucs.c,
# test_cuda_emu_roformer.c, test_cuda_emu_mdx23c.c, test_cuda_emu_larsnet.c, test_cuda_emu_deepfilternet.c).  They run in `make check` on
# any machine and check the kernels' arithmetic, indexing, barriers and the host code
# around them; timing, races between streams and PTX itself are not checked.
CUDA_EMU_DIR  := $(BUILD)/cuda-emu
CUDA_EMU_CXX  ?= $(CXX)
CUDA_EMU_CXXFLAGS := -std=c++17 -Wall -Wextra -Werror -Wno-unknown-pragmas $(CFLAGS) $(SANFLAGS) -pthread \
	-fno-strict-aliasing -Ikernels/cuda/emu -Ikernels/cuda -Isrc $(DEP_CFLAGS) $(BLAS_CFLAGS)
CUDA_EMU_KOBJS := $(patsubst kernels/cuda/%.cu,$(CUDA_EMU_DIR)/%.o,$(wildcard kernels/cuda/*.cu))
CUDA_EMU_MOBJS := $(patsubst %.cu,$(CUDA_EMU_DIR)/%.o,$(wildcard models/*/*.cu))
CUDA_EMU_OBJS := $(CUDA_EMU_DIR)/backend.o $(CUDA_EMU_DIR)/runtime.o $(BUILD)/metal-emu/emu.o $(CUDA_EMU_KOBJS) $(CUDA_EMU_MOBJS)
CUDA_EMU_TEST_BINS := $(BUILD)/tests/test_cuda_emu_ops $(BUILD)/tests/test_cuda_emu_htdemucs \
	$(BUILD)/tests/test_cuda_emu_roformer $(BUILD)/tests/test_cuda_emu_mdx23c $(BUILD)/tests/test_cuda_emu_larsnet \
	$(BUILD)/tests/test_cuda_emu_deepfilternet

CUDA_EMU_HDRS := $(patsubst kernels/cuda/%.h,$(CUDA_EMU_DIR)/%.h,$(wildcard kernels/cuda/*.h))

$(CUDA_EMU_DIR)/%.cpp: kernels/cuda/%.cu kernels/cuda/emu/rewrite.sed
	@mkdir -p $(dir $@)
	{ echo '#line 1 "$<"'; sed -E -f kernels/cuda/emu/rewrite.sed $<; } > $@.tmp && mv $@.tmp $@

# the headers too (cuda_internal.h's launch macros): a .cpp here finds its "x.h" beside itself first
$(CUDA_EMU_DIR)/%.h: kernels/cuda/%.h kernels/cuda/emu/rewrite.sed
	@mkdir -p $(dir $@)
	{ echo '#line 1 "$<"'; sed -E -f kernels/cuda/emu/rewrite.sed $<; } > $@.tmp && mv $@.tmp $@

# (-Wno-unused-variable: constants used only by #pragma unroll, which g++ ignores here;
# -Wno-sign-compare: unsigned threadIdx against int sizes, as nvcc leaves it in device code)
$(CUDA_EMU_KOBJS): $(CUDA_EMU_DIR)/%.o: $(CUDA_EMU_DIR)/%.cpp $(CUDA_EMU_HDRS)
	$(CUDA_EMU_CXX) $(CUDA_EMU_CXXFLAGS) -Wno-unused-variable -Wno-sign-compare -MMD -MP -c $< -o $@

# the models' kernels (models/*/*.cu): the rewritten cuda_internal.h from $(CUDA_EMU_DIR), their
# own headers from their folder
$(CUDA_EMU_DIR)/models/%.cpp: models/%.cu kernels/cuda/emu/rewrite.sed
	@mkdir -p $(dir $@)
	{ echo '#line 1 "$<"'; sed -E -f kernels/cuda/emu/rewrite.sed $<; } > $@.tmp && mv $@.tmp $@

$(CUDA_EMU_MOBJS): $(CUDA_EMU_DIR)/models/%.o: $(CUDA_EMU_DIR)/models/%.cpp $(CUDA_EMU_HDRS)
	$(CUDA_EMU_CXX) -I$(CUDA_EMU_DIR) -Imodels/$(dir $*) $(CUDA_EMU_CXXFLAGS) -Wno-unused-variable -Wno-sign-compare \
	    -MMD -MP -c $< -o $@

$(CUDA_EMU_DIR)/runtime.o: kernels/cuda/emu/runtime.cpp
	@mkdir -p $(dir $@)
	$(CUDA_EMU_CXX) $(CUDA_EMU_CXXFLAGS) -MMD -MP -c $< -o $@

$(CUDA_EMU_DIR)/backend.o: src/backend.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DSS_WITH_CUDA -DSS_CUDA_EMU -MMD -MP -c $< -o $@

# a test program: its C source ($<) linked with the emulated backend
define cuda_emu_test_link
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DSS_TEST_CUDA_EMU -Itests -MMD -MP -c $< -o $@.o
	$(CUDA_EMU_CXX) $(ALL_LDFLAGS) -rdynamic -o $@ $@.o $(CUDA_EMU_OBJS) $(LIBSS) $(LIBS)
	@rm -f $@.o
endef
$(BUILD)/tests/test_cuda_emu_ops: tests/test_cuda_ops.c $(CUDA_EMU_OBJS) $(LIBSS)
	$(cuda_emu_test_link)
$(BUILD)/tests/test_cuda_emu_htdemucs: tests/test_cuda_emu_htdemucs.c $(CUDA_EMU_OBJS) $(LIBSS)
	$(cuda_emu_test_link)
$(BUILD)/tests/test_cuda_emu_roformer: tests/test_cuda_emu_roformer.c tests/test_roformer.c $(CUDA_EMU_OBJS) $(LIBSS)
	$(cuda_emu_test_link)
$(BUILD)/tests/test_cuda_emu_mdx23c: tests/test_cuda_emu_mdx23c.c tests/test_mdx23c.c $(CUDA_EMU_OBJS) $(LIBSS)
	$(cuda_emu_test_link)
$(BUILD)/tests/test_cuda_emu_larsnet: tests/test_cuda_emu_larsnet.c tests/test_larsnet.c $(CUDA_EMU_OBJS) $(LIBSS)
	$(cuda_emu_test_link)
$(BUILD)/tests/test_cuda_emu_deepfilternet: tests/test_cuda_emu_deepfilternet.c tests/test_deepfilternet.c $(CUDA_EMU_OBJS) \
	$(LIBSS)
	$(cuda_emu_test_link)

tests: $(CUDA_EMU_TEST_BINS)

# the CLI on the emulator (not built by default): `-d cuda` runs the whole pipeline
# through the CUDA backend's code on the CPU, e.g. to compare stems with `-d cpu`
.PHONY: cuda-emu-cli
cuda-emu-cli: $(CUDA_EMU_DIR)/stemsplit
$(CUDA_EMU_DIR)/stemsplit: $(CLI_OBJ) $(CUDA_EMU_OBJS) $(LIBSS)
	$(CUDA_EMU_CXX) $(ALL_LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

-include $(CUDA_EMU_KOBJS:.o=.d) $(CUDA_EMU_MOBJS:.o=.d) $(CUDA_EMU_DIR)/runtime.d $(CUDA_EMU_DIR)/backend.d
