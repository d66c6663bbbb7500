# The two commands a newcomer runs: `make demo` and `make test`.
# Both install missing Debian packages (as root, or print the apt-get line),
# configure and build with meson, then run.

BUILD ?= build
DEBIAN_PACKAGES := meson ninja-build pkg-config gcc g++ \
	libglib2.0-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-tools \
	libopencv-dev libfftw3-dev libmodbus-dev libsqlite3-dev sqlite3 \
	python3 python3-numpy python3-torch python3-onnx python3-opencv \
	python3-pymodbus python3-serial-asyncio mbpoll socat \
	aravis-tools libaravis-0.8-0 gstreamer1.0-plugins-bad

# -Werror in CI, warnings visible but not fatal on a developer's machine.
MESON_OPTS := $(if $(CI),-Dwerror=true,)

.PHONY: all deps build demo test clean

all: build

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "Installing missing Debian packages: $$missing"; \
			apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
		else \
			echo "Missing Debian packages. Run:"; \
			echo "  sudo apt-get update && sudo apt-get install -y $$missing"; \
			exit 1; \
		fi; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

demo: build
	tools/demo.sh $(BUILD)

test: build
	tools/run-tests.sh $(BUILD)

clean:
	rm -rf $(BUILD)
