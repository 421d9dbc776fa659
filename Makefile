PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test install-profile clean bench sysdeps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

# The FUSE mount (rv6/fuse_mount.py) needs libfuse3 and fusermount3 from Debian. Installed
# here, not by hand, because a new machine has only what the project's files install. Only
# what `dpkg -s` says is missing is installed, so a ready machine pays no apt-get update.
SYS_PKGS := fuse3 libfuse3-3

sysdeps:
	@missing=""; for p in $(SYS_PKGS); do \
	  dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "sysdeps: not root; install$$missing yourself (FUSE tests will skip)"; exit 0; fi; \
	echo "sysdeps: installing$$missing"; \
	apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null

# py-spy, for sampling profiles of running domains (py-spy record --pid PID)
$(VENV)/.installed-profile: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[profile]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
install-profile: $(VENV)/.installed-profile

run: install sysdeps
	$(BIN)/redleaf up

test: install-test sysdeps
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
