# stemsplit - top-level build.  `make` builds ./stemsplit; see README.md.
#
#   make                 build ./stemsplit (CPU backend)
#   make check           build and run every test; last line "N passed, N failed[, N skipped]"
#   make check-metal     only the Metal kernel tests (grid emulator); part of make check
#   make cuda-emu-cli    build/release/cuda-emu/stemsplit: -d cuda runs the CUDA backend's code
#                        on the CPU (kernels/cuda/emu; its tests are part of make check)
#   make asan            ASan+UBSan build in build/asan and the whole test suite under it
#   make install         PREFIX=/usr/local DESTDIR= : binary, man page, share/stemsplit/models
#   make bench           benchmarks (scripts/bench-*.sh) that can run on this machine
#   make clean

CC      ?= cc
PREFIX  ?= /usr/local
DESTDIR ?=
DATADIR := $(PREFIX)/share/stemsplit
PKG     ?= pkg-config
VERSION := 0.1.0
GIT_COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

# Sanitizer build: SAN=1 (set by `make asan`) builds into build/asan.
SAN ?= 0
ifeq ($(SAN),1)
BUILD   ?= build/asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT     ?= -O1
else
BUILD   ?= build/release
SANFLAGS :=
OPT     ?= -O2
endif

PKGS := sndfile libmpg123 samplerate fftw3f fftw3 libcjson
UNAME_S := $(shell uname -s)
ifeq ($(UNAME_S),Darwin)
BLAS_CFLAGS := -DSS_ACCELERATE=1
BLAS_LIBS   := -framework Accelerate
else
BLAS_CFLAGS := $(shell $(PKG) --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell $(PKG) --libs openblas 2>/dev/null || echo -lopenblas)
endif

DEP_CFLAGS := $(shell $(PKG) --cflags $(PKGS))
DEP_LIBS   := $(shell $(PKG) --libs $(PKGS))

WARN   := -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2
CFLAGS ?= $(OPT) -g
ALL_CFLAGS := -std=c11 $(WARN) $(CFLAGS) $(SANFLAGS) -pthread \
	-D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
	-DSS_VERSION='"$(VERSION)"' -DSS_GIT_COMMIT='"$(GIT_COMMIT)"' -DSS_DATADIR='"$(DATADIR)"' \
	-Isrc $(DEP_CFLAGS) $(BLAS_CFLAGS)
ALL_LDFLAGS := $(SANFLAGS) -pthread $(LDFLAGS)
LIBS := $(DEP_LIBS) $(BLAS_LIBS) -lm -ldl

LIB_SRCS := $(filter-out src/cli.c,$(wildcard src/*.c)) $(wildcard kernels/cpu/*.c) $(wildcard models/*/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(BUILD)/src/cli.o
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
# built with the tests (so both compilers check it), not run by `make check`
BENCH_BINS := $(BUILD)/tests/bench_forward
LIBSS    := $(BUILD)/libstemsplit.a
BIN      := $(BUILD)/stemsplit

.PHONY: all check asan install uninstall bench clean tests
.DELETE_ON_ERROR:

all: stemsplit

# ./stemsplit is the release build; the asan build stays in build/asan/.
ifeq ($(SAN),1)
stemsplit: $(BIN)
else
stemsplit: $(BIN)
	cp $(BIN) $@
endif

$(BIN): $(CLI_OBJ) $(LIBSS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(LIBSS): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(LIBSS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -MMD -MP -o $@ $< $(LIBSS) $(ALL_LDFLAGS) $(LIBS)

tests: $(TEST_BINS) $(BENCH_BINS) $(BIN)

check: tests
	@STEMSPLIT=$(abspath $(BIN)) SS_TEST_BIN=$(abspath $(BUILD)/tests) SAN=$(SAN) sh tests/run.sh

asan:
	$(MAKE) SAN=1 check

install: stemsplit
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(DATADIR)/models
	install -m 755 stemsplit $(DESTDIR)$(PREFIX)/bin/stemsplit
	install -m 644 man/stemsplit.1 $(DESTDIR)$(PREFIX)/share/man/man1/stemsplit.1
	install -m 644 models/*/*.safetensors $(DESTDIR)$(DATADIR)/models/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/stemsplit $(DESTDIR)$(PREFIX)/share/man/man1/stemsplit.1
	rm -rf $(DESTDIR)$(DATADIR)

# On any machine: batch throughput with the shipped model.  The side-by-side
# PyTorch benchmarks need torch and the demucs source (see scripts/bench-cpu.sh,
# scripts/bench-cuda.sh and docs/performance.md).
bench: stemsplit
	sh scripts/bench-batch.sh 40 1

clean:
	rm -rf build stemsplit

-include $(LIB_OBJS:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BINS:=.d) $(BENCH_BINS:=.d)

# ---- fuzzing (clang + libFuzzer; not part of `make check`) -----------------------------
#   make fuzz                  build the harnesses in build/fuzz and run each for FUZZ_TIME s
#   make fuzz FUZZ_TIME=600    longer; FUZZ_ONLY=audio runs one harness; FUZZ_TIME=0 only builds
# Seeds come from tests/fuzz/corpus/NAME; the growing corpus and any crash-* files stay in
# build/fuzz/corpus/NAME and build/fuzz/.  tests/test_fault_fuzz.c replays the seeds and
# tests/fuzz/regress/ in `make check`.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_NAMES   := st_header st_tensors template audio
FUZZ_ONLY    ?= $(FUZZ_NAMES)
FUZZ_TIME    ?= 60
FUZZ_FLAGS   ?= -jobs=1 -workers=1 -timeout=10 -rss_limit_mb=2048 -max_len=65536
FUZZ_BINS    := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
# the harnesses need the readers and the models, not the pipeline or the CLI
FUZZ_LIB_SRCS := $(filter src/audio.c src/ffmpeg.c src/safetensors.c src/template.c src/error.c src/model.c src/backend%.c src/settings.c \
                   src/threadpool.c src/weights.c kernels/% models/%,$(LIB_SRCS))

.PHONY: fuzz fuzz-build fuzz-lib
fuzz: fuzz-build
	@if [ "$(FUZZ_TIME)" -gt 0 ]; then failed=""; for n in $(FUZZ_ONLY); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$n $(FUZZ_BUILD)/log/$$n; \
	    echo "fuzz_$$n: $(FUZZ_TIME) s, log in $(FUZZ_BUILD)/log/$$n"; \
	    (cd $(FUZZ_BUILD)/log/$$n && LSAN_OPTIONS=suppressions=$(abspath tests/fuzz/lsan.supp) \
	     $(abspath $(FUZZ_BUILD))/fuzz_$$n $(FUZZ_FLAGS) -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	        -artifact_prefix=$(abspath $(FUZZ_BUILD))/ $(abspath $(FUZZ_BUILD))/corpus/$$n \
	        $(abspath tests/fuzz/corpus)/$$n) || failed="$$failed $$n"; \
	    tail -n 25 $(FUZZ_BUILD)/log/$$n/fuzz-0.log 2>/dev/null | grep -E '^(#|stat::|==|SUMMARY)' | tail -n 12; \
	done; if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed (inputs in $(FUZZ_BUILD)/)"; exit 1; fi; fi

fuzz-build: $(FUZZ_BINS)

# the library, instrumented for coverage, by a sub-make into build/fuzz
fuzz-lib:
	@$(MAKE) --no-print-directory CC=$(FUZZ_CC) BUILD=$(FUZZ_BUILD) SAN=0 OPT=-O1 SANFLAGS='$(FUZZ_SAN)' \
	    LIB_SRCS='$(FUZZ_LIB_SRCS)' $(FUZZ_BUILD)/libstemsplit.a

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/*.h fuzz-lib
	$(FUZZ_CC) $(ALL_CFLAGS) -O1 $(FUZZ_SAN) -o $@ $< $(FUZZ_BUILD)/libstemsplit.a \
	    -fsanitize=fuzzer,address,undefined -pthread $(LIBS)

# the CUDA backend and `make bundle` (kernels/cuda/cuda.mk)
include kernels/cuda/cuda.mk
# the Metal backend (macOS) and its emulated kernels for `make check` / `make check-metal`
include kernels/metal/metal.mk
