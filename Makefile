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
	aravis-tools libaravis-0.8-0 gstreamer1.0-plugins-bad \
	libsoup-3.0-dev libjson-glib-dev libglib2.0-dev-bin chromium \
	protobuf-c-compiler libprotobuf-c-dev libonnx-dev libiio-dev \
	python3-gi gir1.2-gst-rtsp-server-1.0 \
	libsystemd-dev systemd libpq-dev postgresql python3-psycopg2 \
	mosquitto mosquitto-clients libmosquitto-dev python3-paho-mqtt lintian \
	libdnnl-dev libfaketime

# -Werror in CI, warnings visible but not fatal on a developer's machine.
MESON_OPTS := $(if $(CI),-Dwerror=true,)

.PHONY: all deps build web-deps demo review web-test-deps test package clean

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

build: deps $(BUILD)/build.ninja web-deps
	ninja -C $(BUILD)

# The review page's charting library (uPlot, npm) in the build folder, never
# in git; vigild serves it from there ([review] charts_dir). Without npm, or
# when the registry cannot be reached, the page works and says that charts
# are unavailable, so `make demo` never depends on the network.
UPLOT := uplot@1.6.32
web-deps: $(BUILD)/build.ninja
	@if [ -f $(BUILD)/web-vendor/node_modules/uplot/dist/uPlot.iife.min.js ]; then :; \
	elif command -v npm >/dev/null; then \
		npm install --prefix $(BUILD)/web-vendor --no-audit --no-fund $(UPLOT) || \
		echo "uPlot not installed: the review page will have no charts"; \
	else \
		echo "npm not found: the review page will have no charts"; \
	fi

demo: build
	tools/demo.sh $(BUILD)

# The QA review page over the demo's log (README, "Reviewing the log"):
# vigild --review-only on the embedded default config, http://127.0.0.1:8080/.
review: build
	@test -f $(BUILD)/demo/vigil.db || { echo "no $(BUILD)/demo/vigil.db: run make demo first"; exit 1; }
	cd $(BUILD)/demo && exec $(abspath $(BUILD))/app/vigild --review-only

# playwright-core (npm) for the review page's browser test, kept in the
# build folder; the test drives Debian's /usr/bin/chromium, no browser
# download. Without npm (Debian's npm conflicts with some nodejs builds, so
# it is not installed for you) the browser test is skipped, saying why; with
# npm, a failed install fails `make test` rather than skipping the test.
PLAYWRIGHT_CORE := playwright-core@1.65.1
web-test-deps: $(BUILD)/build.ninja
	@if [ -d $(BUILD)/web-test/node_modules/playwright-core ]; then :; \
	elif command -v npm >/dev/null; then \
		npm install --prefix $(BUILD)/web-test --no-audit --no-fund $(PLAYWRIGHT_CORE); \
	else \
		echo "npm not found: the review page's browser test will be skipped"; \
	fi

test: build web-test-deps
	tools/run-tests.sh $(BUILD)

# The Debian package, vigil_VERSION_ARCH.deb here, from the build folder
# (pkg/make-deb.sh; README, "Installing the package").
package: build
	pkg/make-deb.sh $(BUILD) .

clean:
	rm -rf $(BUILD)
