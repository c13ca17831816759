# The two commands of the README: `make run` and `make test` (`make unit`: its fast tier).
# Both install what they need first (apt packages, then a .venv), and are quick when done.

PYTHON     ?= python3
VENV       := .venv
VPY        := $(VENV)/bin/python
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export SCANBRIDGE_HOME ?= $(CURDIR)

# System packages are listed once, in system-packages.txt (doctor checks the same list).
APT_RUN    := $(shell awk '$$2 == "run" || $$2 == "build" {print $$1}' system-packages.txt)
APT_TEST   := $(shell awk '$$2 == "run" || $$2 == "build" || $$2 == "test" {print $$1}' system-packages.txt)

.PHONY: run test unit system-run system-test venv venv-test bench js wheel deb

run: system-run venv
	$(VENV)/bin/scanbridge run

test: system-test venv-test
	$(VPY) -m pytest

# The fast tier alone: no processes, under a minute.
unit: venv-test
	$(VPY) -m pytest tests/unit

bench: venv-test
	$(VPY) -m bench.broker
	$(VPY) -m bench.buffer
	$(VPY) -m bench.scan
	$(VPY) -m bench.gateway
	$(VPY) -m bench.https
	$(VPY) -m bench.upload
	$(VPY) -m bench.ocr
	$(VPY) -m bench.camera

# scanbridge.js as the one file web apps host (docs/js-client.md); npm pack makes it too.
# Generated, so git-ignored: the tests build it from the modules every run.
JS_SOURCES := $(wildcard actors/gateway/static/scanbridge.js actors/gateway/static/scanbridge/*.js)
js: dist/scanbridge.js
dist/scanbridge.js: $(JS_SOURCES) scanbridge/jsbundle.py broker/__init__.py
	$(PYTHON) -m scanbridge.jsbundle $@

# dist/scanbridge-VERSION-py3-none-any.whl: the packages and, in broker/shipped/, the files
# the service reads from the checkout (setup.py). `make wheel VERSION=0.2.1` builds the same
# tree as another version (upgrade tests). build/ goes first: a module removed from the
# tree must not ride along from an earlier build. setuptools' warnings about static/ (data,
# not packages) are shown only when the build fails. Any Python with pip builds it (the
# build needs none of the dependencies): the .venv's when there is one.
VERSION ?=
WHEEL_PY = $(shell [ -x $(VPY) ] && echo $(VPY) || echo $(PYTHON))
wheel:
	@echo "$(VERSION)" | grep -Eqx '([0-9]+(\.[0-9]+){1,3})?' || \
	  { echo "make wheel: VERSION=$(VERSION): want numbers like 0.2.1" >&2; exit 2; }
	@rm -rf build
	@out=$$(SCANBRIDGE_VERSION=$(VERSION) $(WHEEL_PY) -m pip wheel --no-deps -w dist . 2>&1) || \
	  { echo "$$out" >&2; exit 1; }; echo "$$out" | \
	  sed -n 's|.*filename=\([^ ]*\.whl\).*|built dist/\1|p'

# dist/scanbridge_VERSION_ARCH.deb: the wheel and the wheels of its dependencies, cached in
# cache/wheels/ (packaging/deb/build.py says how). `make deb VERSION=0.2.1` builds another
# version of the same tree (upgrade tests).
deb: system-run wheel
	@$(PYTHON) packaging/deb/build.py --version "$(VERSION)"

# apt only when a package is missing: dpkg-query is fast, apt-get update is not.
system-run:
	@$(call apt_install,$(APT_RUN))
system-test:
	@$(call apt_install,$(APT_TEST))

define apt_install
missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
if [ -n "$$missing" ]; then \
  echo "installing system packages: $$missing"; \
  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
fi
endef

# The venv is updated only when the package metadata changes.
venv: $(VENV)/.installed
venv-test: $(VENV)/.installed-test
$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	[ -x $(VPY) ] || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e .
	touch $@
$(VENV)/.installed-test: $(VENV)/.installed
	$(VPY) -m pip install -q -e '.[test]'
	touch $@
