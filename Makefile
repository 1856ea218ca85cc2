# The two commands (see README):
#   make run   - set up and start dev mode: the simulated home and the dashboard on http://127.0.0.1:8080
#   make test  - set up (Python packages and the system packages the tests need) and run ruff and pytest
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# chromium (+ chromium-driver) for the dashboard's browser tests (Playwright drives /usr/bin/chromium)
SYSTEM_PACKAGES := mosquitto dosfstools mtools fdisk e2fsprogs chromium chromium-driver
# the gateway image (image/): its build and the emulator boot test that `make test` runs; the boot loaders'
# own tests run real U-Boot (QEMU's arm64 virt board) and real GRUB under UEFI firmware (OVMF)
IMAGE_PACKAGES := mmdebstrap qemu-system-x86 qemu-utils dosfstools mtools e2fsprogs fdisk openssh-client \
	ovmf grub-efi-amd64-bin u-boot-tools u-boot-qemu qemu-system-arm
# arm64 (Raspberry Pi) image: built under qemu-user emulation, booted on QEMU's virt board
IMAGE_ARM64_PACKAGES := qemu-user-static binfmt-support arch-test
SYSTEM_PACKAGES += $(IMAGE_PACKAGES)
ARCH ?= amd64
APT_GET := $(shell command -v apt-get 2>/dev/null)
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

.PHONY: run test lint venv system-deps clean image image-deps image-arm64 image-boot-test image-update-test

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed ($(PYTHON) is $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11"; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		if [ -n "$(APT_GET)" ] && [ "$(IS_ROOT)" = yes ]; then \
			apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); \
		else echo "cannot create a virtual environment: install it with: sudo apt-get install python3-venv"; exit 1; fi; }
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test,zigbee-radios]'
	@touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

system-deps:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ -n "$(APT_GET)" ] && [ "$(IS_ROOT)" = yes ]; then \
			echo "installing system packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		else \
			echo "the tests need these system packages:$$missing"; \
			echo "install them with: sudo apt-get install$$missing"; exit 1; \
		fi; \
	fi

run: $(VENV)/.installed
	$(BIN)/hems dev

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed-test system-deps lint
	$(BIN)/pytest -q

# `make image ARCH=amd64|arm64`: the flashable disk image in var/image/ (root: mmdebstrap, chroot, file owners)
image: $(VENV)/.installed image-deps
	PYTHON=$(BIN)/python image/build.sh $(ARCH)

image-deps:
	@$(MAKE) --no-print-directory system-deps \
		SYSTEM_PACKAGES="$(IMAGE_PACKAGES) $(if $(filter arm64,$(ARCH)),$(IMAGE_ARM64_PACKAGES))"

# the Raspberry Pi image, and its boot on QEMU's arm64 virt board (not part of `make test`: ~20 min emulated)
image-arm64: $(VENV)/.installed-test
	@$(MAKE) --no-print-directory image-deps ARCH=arm64
	HEMS_IMAGE_ARM64=1 $(BIN)/pytest -q image/tests/test_image_arm64.py

# the amd64 image built and booted in QEMU (also run by `make test`)
image-boot-test: $(VENV)/.installed-test image-deps
	$(BIN)/pytest -q image/tests/test_image_boot.py

# A/B updates of the amd64 image in the emulator: a bundle to slot b and back, a broken one rolled back (~13 min)
image-update-test: $(VENV)/.installed-test image-deps
	HEMS_IMAGE_UPDATE_TEST=1 $(BIN)/pytest -q image/tests/test_image_update.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
