# Everything a new machine needs is done here: `make run` and `make test` set up on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run check test lock bench browser install-service clean

# constraints.txt pins every package (dependencies of dependencies too) to the versions the
# suite last passed with, so every machine installs the same; `make lock` refreshes it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/facequeue setup-weights
	touch $(STAMP)

setup: $(STAMP)

# The main job on the default config (Wikimedia Commons search: no account, no API key).
run: $(STAMP)
	$(BIN)/facequeue add-person "Nikola Tesla" --country Serbia --occupation inventor
	$(BIN)/facequeue run --once
	$(BIN)/facequeue status

# The report test drives Debian's headless Chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get install -y -qq chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }; }

# The checks CI runs, in order: lint, format, types, then the whole suite.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check browser
	$(BIN)/python -m pytest -q

# After changing dependencies in pyproject.toml: install, run `make test`, then commit this.
lock: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test]'
	{ echo "# pip freeze of a passing venv (make lock); used by make setup as pip -c constraints.txt"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^-e '; } > constraints.txt

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Run as root on the target machine after `make setup` in /opt/facequeue (README: systemd).
install-service: $(STAMP)
	id -u facequeue >/dev/null 2>&1 || useradd --system --home /var/lib/facequeue --shell /usr/sbin/nologin facequeue
	install -d -m 0755 /etc/facequeue
	[ -f /etc/facequeue/facequeue.toml ] || install -m 0644 facequeue.toml /etc/facequeue/facequeue.toml
	[ -f /etc/facequeue/secrets.env ] || install -m 0600 /dev/null /etc/facequeue/secrets.env
	install -m 0644 systemd/facequeue.service /etc/systemd/system/facequeue.service
	systemctl daemon-reload
	systemctl enable --now facequeue

clean:
	rm -rf $(VENV) data
