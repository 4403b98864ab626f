# Airut build, test and benchmark entry points. `make test` is what CI runs.
SHELL := /bin/bash
GO ?= go
export CGO_ENABLED ?= 0
# Hosts where Podman's default OCI runtime cannot start containers (cgroup v1,
# nested containers) need runc and explicit ulimits: the same file `airut
# check` recommends to operators. Harmless where the defaults work.
export CONTAINERS_CONF ?= $(CURDIR)/contrib/containers.conf
BIN := bin
TEST_USER ?= airut-test
PKGS_RACE := ./internal/sandbox/... ./internal/secrets/... ./internal/claudecli/... ./internal/redact/... ./internal/conversation/... ./internal/channel/... ./internal/agent/... ./internal/proxy/... ./internal/gateway/... ./internal/scheduler/... ./internal/config/... ./internal/dashboard/...

.PHONY: all build test test-deps test-claude test-mail-deps test-actionlint test-unit vendor-check test-rootless bench lint run clean
AIRUT_CONFIG ?= $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/airut/airut.yaml

all: build

build:
	$(GO) build -trimpath -o $(BIN)/ ./cmd/...

# Installs what the container tests need when it is missing (as root).
test-deps:
	@missing=""; \
	for p in podman runc uidmap slirp4netns busybox-static git shellcheck systemd chromium; do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run make test-deps as root)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The Claude Code release the tests run (pinned in internal/testkit/claude.go),
# installed from the npm registry with the gateway's own installer (sha512
# integrity checked) into ~/.cache/airut/claude-binaries: downloaded once
# per machine, not once per run.
test-claude:
	$(GO) run ./internal/testkit/installclaude

# Debian's Dovecot and Postfix for the email suite against real mail
# servers (internal/testkit/mailtest starts its own instances from a temp
# dir on loopback ports; nothing under /etc is configured or started).
# Postfix is preseeded to "No configuration" so its package writes no
# main.cf of its own, and a temporary policy-rc.d keeps the packages from
# starting the system-wide daemons.
MAIL_PKGS := dovecot-imapd dovecot-lmtpd postfix
test-mail-deps:
	@missing=""; \
	for p in $(MAIL_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run make test-mail-deps as root)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy=1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; rc=$$?; \
	  if [ -n "$$policy" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$rc; \
	fi

# actionlint, for the lint of action.yml and the README's workflow
# (TestActionLint), fetched into the module cache once per machine: the
# test runs it from there, offline. Keep the version in step with
# internal/sandboxcli/action_test.go.
ACTIONLINT := github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
test-actionlint:
	@$(GO) run $(ACTIONLINT) -version >/dev/null

test: test-deps test-mail-deps test-claude test-actionlint test-unit test-rootless

# -timeout: the container suites take minutes each, more on a loaded
# machine, and go test's default of 10 minutes per package is no limit of
# ours (CI's is 90 minutes for everything).
test-unit:
	$(GO) test -count=1 -timeout 30m ./...
	CGO_ENABLED=1 $(GO) test -count=1 -timeout 30m -race $(PKGS_RACE)

# The container suite again as an unprivileged user with subordinate ids:
# rootless Podman is the recommended deployment. Test binaries are built
# here, as the invoking user, because the test user has no Go caches.
test-rootless:
	@if [ "$$(id -u)" != 0 ]; then echo "test-rootless: already unprivileged, covered by test-unit"; exit 0; fi; \
	set -e; \
	id $(TEST_USER) >/dev/null 2>&1 || useradd -m -s /bin/bash $(TEST_USER); \
	grep -q "^$(TEST_USER):" /etc/subuid || usermod --add-subuids 200000-265535 --add-subgids 200000-265535 $(TEST_USER); \
	chmod 666 /dev/net/tun; \
	dir=$$(mktemp -d /tmp/airut-rootless.XXXXXX); \
	$(GO) test -c -o $$dir/sandbox.test ./internal/sandbox; \
	$(GO) run ./internal/testkit/buildbins $$dir/bin; \
	cp contrib/containers.conf $$dir/containers.conf; \
	chmod -R a+rX $$dir; \
	su $(TEST_USER) -s /bin/bash -c "cd $$dir && CI=$${CI:-} CONTAINERS_CONF=$$dir/containers.conf AIRUT_TESTBIN_DIR=$$dir/bin ./sandbox.test -test.count=1 -test.v" \
	  | grep -E '^(--- |ok|FAIL|PASS|panic)' ; \
	test $${PIPESTATUS[0]} -eq 0; \
	rm -rf $$dir

# Sets up and runs the gateway: prerequisites, binaries, a host check, then
# the gateway itself. Without a config file it starts with the defaults and
# prints the dashboard's URL, where the rest is set up (the file is written
# by the config editor; `airut config init` writes a commented one).
run: test-deps build
	-./$(BIN)/airut check --config $(AIRUT_CONFIG)
	exec ./$(BIN)/airut run --config $(AIRUT_CONFIG)

# Container benchmarks interleave the two sides in one run and report ratios.
# BenchmarkRealClaudeFirstRequest (gateway) reports the real CLI's first API
# request after a message arrives beside the bare sandbox start, in one run.
bench: test-deps test-claude
	$(GO) test -run '^$$' -bench . -benchtime 10x ./internal/sandbox/ ./internal/sandboxcli/
	$(GO) test -run '^$$' -bench . -benchtime 10x ./internal/proxy/
	$(GO) test -run '^$$' -bench . ./internal/allowlist/
	$(GO) test -run '^$$' -bench 'MessageToAgentStart|BareSandboxStart|RealClaudeFirstRequest' -benchtime 5x ./internal/gateway/
	$(GO) test -run '^$$' -bench BusPublish ./internal/gateway/
	# 200 messages over 20 conversations, max_concurrent 3: about a minute.
	$(GO) test -run '^$$' -bench Soak -benchtime 1x -timeout 30m ./internal/gateway/

lint: test-actionlint
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) test -count=1 -run '^TestActionLint$$' ./internal/sandboxcli/

clean:
	rm -rf $(BIN)

# Re-fetches the dashboard's vendored htmx files from the npm registry and
# checks them against the integrity pinned in the tree
# (internal/dashboard/static/vendor/INTEGRITY).
vendor-check:
	scripts/vendor-htmx.sh
