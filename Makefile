# openstack-ha: OCF agents, crmtool and their proof on a real cluster.
SHELL := /bin/bash

PYTHON      ?= /usr/bin/python3
VENV        ?= .venv
VPY         := $(VENV)/bin/python
DESTDIR     ?=
OCF_ROOT    ?= /usr/lib/ocf
PROVIDER    ?= openstack
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib/openstack-ha
BINDIR      ?= $(PREFIX)/bin
DATADIR     ?= /usr/share/openstack-ha
PYTEST_ARGS ?=
BENCH_ARGS  ?=
DEMO_ARGS   ?=
BENCH_CLUSTER_ARGS ?=

APT := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -y -q
# Cluster stack, agent runtime, test tools.
DEBIAN_PACKAGES := make pacemaker pacemaker-cli-utils corosync pcs crmsh resource-agents \
	python3 python3-venv python3-lxml python3-psutil python3-pymysql python3-pika \
	iproute2 iputils-ping tcpdump libxml2-utils hyperfine util-linux procps psmisc \
	mariadb-server mariadb-client mariadb-backup rabbitmq-server graphviz curl python3-fusepy memcached \
	haproxy stress-ng
# Installed without recommends: drbd-utils would pull in a mail server, OpenStack a lot more.
DEBIAN_PACKAGES_NORECOMMENDS := kmod drbd-utils keystone glance-api nova-api python3-openstackclient \
	openstack-dashboard uwsgi-core uwsgi-plugin-python3 \
	neutron-server python3-neutronclient nova-conductor nova-scheduler python3-placement

INSTALL_ARGS = --destdir "$(DESTDIR)" --ocf-root $(OCF_ROOT) --provider $(PROVIDER) \
	--libdir $(LIBDIR) --bindir $(BINDIR) --datadir $(DATADIR)

.PHONY: all deps deps-debian deps-python install uninstall test lint bench bench-cluster demo docs clean

all: lint

deps: deps-debian deps-python

deps-debian:
	@missing=$$(dpkg-query -W -f='$${db:Status-Abbrev} $${Package}\n' $(DEBIAN_PACKAGES) \
		$(DEBIAN_PACKAGES_NORECOMMENDS) 2>/dev/null | awk '$$1 == "ii" {print $$2}' | \
		sort | comm -13 - <(tr ' ' '\n' <<< "$(DEBIAN_PACKAGES) $(DEBIAN_PACKAGES_NORECOMMENDS)" | \
		grep -v '^$$' | sort)); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		$(APT) update && \
		$(APT) install $(filter-out $(DEBIAN_PACKAGES_NORECOMMENDS),$(DEBIAN_PACKAGES)) && \
		$(APT) install --no-install-recommends $(DEBIAN_PACKAGES_NORECOMMENDS); \
	else echo "Debian packages: all present"; fi

# Debian's interpreter with Debian's lxml/psutil/pymysql/pika, plus the dev tools from PyPI.
$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check "pytest>=8" "ruff>=0.6" "mypy>=1.10" \
		"hypothesis>=6.100" lxml-stubs types-psutil types-PyMySQL
	touch $@

deps-python: $(VENV)/.stamp

install:
	$(PYTHON) tools/install.py install $(INSTALL_ARGS)

uninstall:
	$(PYTHON) tools/install.py uninstall $(INSTALL_ARGS)

lint: deps-python
	$(VENV)/bin/ruff check agents crmtool dbbackup tests harness bench tools nscluster
	$(VENV)/bin/mypy agents crmtool dbbackup tools nscluster

test: deps install lint
	$(VPY) -m pytest $(PYTEST_ARGS)

bench: deps install
	$(VPY) -m bench $(BENCH_ARGS)

demo: deps install
	$(VPY) -m tools.demo $(DEMO_ARGS)

# Failover after crashes of the database and VIP holders on a real namespace cluster (~30 minutes).
# --bus: the message bus (nscluster.bus_bench; --reference adds ocf:heartbeat:rabbitmq-cluster).
bench-cluster: deps install
	$(VPY) -m $(if $(filter --bus,$(BENCH_CLUSTER_ARGS)),nscluster.bus_bench,nscluster.bench) $(BENCH_CLUSTER_ARGS)

docs: deps-python
	$(VPY) -m tools.docs README.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
