# The two entry points are `make demo` and `make test` (see README.md).
PREFIX    ?= /usr/local
DESTDIR   ?=
HOOKS_DIR ?= /etc/containers/oci/hooks.d
STATE_DIR ?= /var/lib/oci-ftrace-syscall-analyzer
LIBEXEC   := $(PREFIX)/libexec/oci-ftrace-syscall-analyzer
# Podman 4.x reads only /usr/share/containers/oci/hooks.d unless told more;
# this drop-in adds HOOKS_DIR (set PODMAN_DROPIN= to skip it).
PODMAN_DROPIN ?= /etc/containers/containers.conf.d/50-oci-ftrace-syscall-analyzer.conf
CARGO     ?= cargo

.PHONY: all build setup install uninstall demo test

all: build

build:
	$(CARGO) build --release --locked --workspace --bins

# System packages (podman, runc, busybox-static, CRIU 4.x, ...) and tracefs.
setup:
	bash scripts/setup.sh

# Binaries go under $(DESTDIR)$(PREFIX); the hooks.d files name the final
# (DESTDIR-less) hook path, as runtimes will see it.
install: build
	install -D -m 0755 target/release/oci-ftrace-hook $(DESTDIR)$(LIBEXEC)/oci-ftrace-hook
	install -D -m 0755 target/release/collector $(DESTDIR)$(PREFIX)/bin/collector
	target/release/collector install-hooks --hook-path $(LIBEXEC)/oci-ftrace-hook \
		--hooks-dir $(DESTDIR)$(HOOKS_DIR) --state-dir $(STATE_DIR) \
		--hook-arg=--collector=$(PREFIX)/bin/collector
	@if [ -n "$(PODMAN_DROPIN)" ]; then \
		mkdir -p $$(dirname $(DESTDIR)$(PODMAN_DROPIN)); \
		printf '# Written by oci-ftrace-syscall-analyzer'"'"'s make install.\n[engine]\nhooks_dir = ["/usr/share/containers/oci/hooks.d", "$(HOOKS_DIR)"]\n' \
			> $(DESTDIR)$(PODMAN_DROPIN); \
		echo "wrote $(DESTDIR)$(PODMAN_DROPIN) (podman reads $(HOOKS_DIR))"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(HOOKS_DIR)/oci-ftrace-syscall-analyzer-prestart.json \
	      $(DESTDIR)$(HOOKS_DIR)/oci-ftrace-syscall-analyzer-poststop.json \
	      $(DESTDIR)$(LIBEXEC)/oci-ftrace-hook $(DESTDIR)$(PREFIX)/bin/collector
	[ -z "$(PODMAN_DROPIN)" ] || rm -f $(DESTDIR)$(PODMAN_DROPIN)
	rm -rf $(DESTDIR)/run/oci-ftrace-syscall-analyzer

demo: setup install
	bash scripts/demo.sh

# Unit and end-to-end tests on this host; under CI=true (or VM_TEST=1) the
# tested matrix (vm-test) as well.
test: setup
	bash scripts/test.sh

# The tested matrix: the e2e tests on the host and in VMs (kernels 6.1 and
# 6.12 x runc and crun, cgroup v2); writes vm/MATRIX.md and the README table.
# The VM image is cached in vm/cache/ by a hash of its recipe.
.PHONY: vm-image vm-test
vm-image:
	bash vm/build-image

vm-test:
	bash vm/run-matrix
