# stt-bridge: `make demo` and `make test` are all a new user needs (both run `make setup` first).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Debian / Raspberry Pi OS packages the project needs at run time and in its tests
# (not libasound2-plugins: the worker resamples itself, and PortAudio would load its codecs: scripts/install.sh)
DEB_PACKAGES := espeak-ng sox mosquitto mosquitto-clients libportaudio2 alsa-utils python3-venv
# the browser test of the live page (issue 5) uses Debian's chromium, tests/deploy/test_haproxy.py Debian's
# haproxy (the package enables its unit, on a default config that listens nowhere); optional for the demo
DEB_TEST_PACKAGES := chromium systemd openssl strace haproxy
# `make check-arm64` only: an arm64 Debian root run under qemu-user through binfmt_misc
DEB_ARM64_PACKAGES := debootstrap qemu-user-static binfmt-support

.PHONY: setup system-packages venv demo test lint typecheck bench bench-quick bench-idle bench-peers soak fuzz check-arm64 clean

setup: system-packages venv

system-packages:
	@bash scripts/install-system-packages.sh $(DEB_PACKAGES) $(if $(SKIP_TEST_PACKAGES),,$(DEB_TEST_PACKAGES))

# the stamp makes setup idempotent and quick: pip runs again only when pyproject.toml changed
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev,bench]'
	@touch $@

demo: setup
	$(PY) -m demo

# lint and types first: cheap, and they keep the code from drifting out of ruff/mypy clean
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# property-based fuzzing (Hypothesis, tests/fuzz) of every decoder and session machine with the "fuzz"
# profile: FUZZ_EXAMPLES (600) examples a test, minutes where `make test` gives it seconds; failures are
# kept in .hypothesis/ and replayed first next time. No atheris: PyPI has no aarch64 wheel of it.
FUZZ_EXAMPLES ?= 600
fuzz: setup
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/fuzz -q --timeout=3600

bench: setup
	$(PY) -m bench.run

bench-quick: setup
	$(PY) -m bench.run --quick

# the idle worker (ws, local) beside arecord and a sounddevice loop on real-time virtual microphones, as found
# and with the cores made busy, and onset latency per capture block (bench/idle.py): its section of RESULTS.md
bench-idle: setup
	IDLE_MAKE=1 $(PY) -m bench.idle

# wyoming-faster-whisper and WhisperLive beside our server, each in its own venv under bench/.venvs/
bench-peers: setup
	$(PY) -m bench.run --peers

# not part of `make test`: SOAK_S seconds (an hour by default) of speech and silence through server and worker,
# the broker and the server restarted at random; exit 1 on growth or a lost final (bench/soak.py)
SOAK_S ?= 3600
soak: setup
	SOAK_MAKE=1 SOAK_S=$(SOAK_S) $(PY) -m bench.soak

# not part of `make test`: the worker from a wheel of this tree transcribes the demo recording in a Debian arm64
# root under qemu (cached in .cache/arm64/; the first run takes 20-40 minutes, a rerun reinstalls the wheel);
# writes the arm64 section of bench/RESULTS.md (bench/arm64.py). Needs root or sudo (debootstrap, mount, chroot).
check-arm64: setup
	@bash scripts/install-system-packages.sh $(DEB_ARM64_PACKAGES)
	ARM64_MAKE=1 $(PY) -m bench.arm64

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
