# Thin wrapper: install dependencies, configure, build, test, demo.
# Everything real lives in CMake (build), ctest (tests) and scripts (demo).

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
DEPS_FILE := packaging/deps.txt
DEPS_STAMP := $(BUILD_DIR)/.deps-installed
PREFIX ?= /usr/local
DESTDIR ?=

.PHONY: all deps build test unit-test integration-test demo install clean

all: build

# Install the Debian packages listed in packaging/deps.txt that are missing.
deps: $(DEPS_STAMP)
$(DEPS_STAMP): $(DEPS_FILE)
	@./packaging/install-deps.sh $(DEPS_FILE)
	@mkdir -p $(BUILD_DIR) && touch $@

$(BUILD_DIR)/build.ninja: CMakeLists.txt | $(DEPS_STAMP)
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The whole suite: unit tests always, integration/e2e/vm tests where the
# machine allows (root and /dev/fuse). ctest prints the closing summary.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600 -j 2

unit-test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L unit

integration-test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -L integration

# kill -9 and hot upgrade of nydusd under a reading container (needs root,
# /dev/fuse, containerd and runc, all in packaging/deps.txt); ~1 minute.
demo: build
	@./tests/demo/run-demo.sh $(BUILD_DIR)

# Binaries to $(PREFIX)/bin, the systemd unit to $(PREFIX)/lib/systemd/system,
# configs to /etc/nydus (always /etc, also under a staging DESTDIR):
#   make install DESTDIR=/tmp/stage
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD_DIR) --prefix $(PREFIX)
clean:
	rm -rf $(BUILD_DIR)
