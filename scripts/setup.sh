#!/usr/bin/env bash
# Prepare this machine for cems: Debian packages, a running Open vSwitch, the virtual
# environment with pinned PyPI packages, and gRPC code generated from proto/.
# Idempotent: every step checks first and reuses what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
DEB_PACKAGES="openvswitch-switch mininet iperf3 ethtool tcpdump iputils-ping iproute2 python3-venv openssl tshark build-essential python3-dev libndpi-dev pkg-config"
# Installed without their recommendations (which would add node exporter, smartmontools and
# a desktop's worth of fonts): promtool and a Prometheus server for the rules and dashboard
# tests, a headless browser with its driver for the portal's tests, and PostgreSQL for the
# shared store, etcd for mastership and NATS for the record stream (tests start their own
# servers on free ports).
DEB_PACKAGES_BARE="prometheus chromium chromium-driver postgresql etcd-server nats-server"

say() { printf '== setup: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
  echo "setup: must run as root (Open vSwitch, Mininet and namespaces need it)" >&2
  exit 1
fi

missing=""
for p in $DEB_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
bare=""
for p in $DEB_PACKAGES_BARE; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || bare="$bare $p"
done
if [ -n "$missing$bare" ]; then
  say "installing Debian packages:$missing$bare"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  [ -z "$missing" ] || apt-get install -y -q $missing
  # Debian starts prometheus and postgresql services on install where an init system allows
  # it; cems' tests start their own servers on 127.0.0.1, so system ones are stopped again.
  [ -z "$bare" ] || apt-get install -y -q --no-install-recommends $bare
  for service in prometheus postgresql etcd nats-server; do
    if [ -n "$bare" ] && command -v systemctl >/dev/null && systemctl is-active -q "$service" 2>/dev/null; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi

# Open vSwitch: the kernel here has no openvswitch module, so only the daemons are needed;
# bridges use datapath_type=netdev (see ../shared/ENVIRONMENT.md).
if ! timeout 5 ovs-vsctl show >/dev/null 2>&1; then
  say "starting Open vSwitch"
  /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random 2>&1 | grep -v ulimit || true
  timeout 10 ovs-vsctl show >/dev/null
fi

# The venv uses Debian's python3 with system site packages so that Debian's Mininet imports.
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
req_hash=$(cat requirements.txt setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.cems-req" 2>/dev/null)" != "$req_hash" ]; then
  say "installing PyPI packages"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$req_hash" > "$VENV/.cems-req"
fi

# gRPC code: generated into gen/ (ignored by git). A .pth file puts gen/ and the checkout on
# the venv's path, so new packages and regenerated code need no reinstall.
proto_hash=$( (find proto -name '*.proto' -print0 | sort -z | xargs -0 cat; cat requirements.txt) | sha256sum | cut -d' ' -f1)
if [ "$(cat gen/.proto-hash 2>/dev/null)" != "$proto_hash" ]; then
  say "generating gRPC code from proto/"
  rm -rf gen
  mkdir -p gen
  find proto -name '*.proto' -print0 | xargs -0 "$VENV/bin/python" -m grpc_tools.protoc \
    -Iproto --python_out=gen --pyi_out=gen --grpc_python_out=gen
  touch gen/cems/__init__.py gen/cems/v1/__init__.py
  echo "$proto_hash" > gen/.proto-hash
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\n%s\n' "$ROOT" "$ROOT/gen" > "$site/cems.pth"

# The passive probe's compiled hot path (probes/_fast.pyx, Cython): rebuilt when its source,
# its build script or the Python changes. Without it the probe runs its pure-Python path;
# CEMS_SKIP_FAST=1 skips the build (and its tests) on a machine without a C compiler.
if [ "${CEMS_SKIP_FAST:-0}" != 1 ]; then
  fast_hash=$( (cat probes/_fast.pyx scripts/build_fast.py; "$VENV/bin/python" -VV) | sha256sum | cut -d' ' -f1)
  if [ "$(cat probes/.fast-hash 2>/dev/null)" != "$fast_hash" ] || ! ls probes/_fast.*.so >/dev/null 2>&1; then
    say "building the probe's compiled hot path"
    rm -f probes/_fast.*.so probes/_fast.c
    if ! "$VENV/bin/python" scripts/build_fast.py >/tmp/cems-build-fast.log 2>&1; then
      cat /tmp/cems-build-fast.log >&2
      echo "setup: building probes/_fast.pyx failed (log above); CEMS_SKIP_FAST=1 runs without it" >&2
      exit 1
    fi
    echo "$fast_hash" > probes/.fast-hash
  fi
fi

# The Ryu 4.34 runtime in a venv of its own (it cannot share setuptools with the main one).
RYU_VENV="$ROOT/.venv-ryu"
if [ "${CEMS_SKIP_RYU:-0}" != 1 ]; then
  if [ ! -x "$RYU_VENV/bin/python" ]; then
    say "creating $RYU_VENV"
    /usr/bin/python3 -m venv --system-site-packages "$RYU_VENV"
  fi
  ryu_hash=$(sha256sum requirements-ryu.txt | cut -d' ' -f1)
  if [ "$(cat "$RYU_VENV/.cems-req" 2>/dev/null)" != "$ryu_hash" ]; then
    say "installing Ryu 4.34"
    "$RYU_VENV/bin/pip" install -q --disable-pip-version-check 'setuptools<58' wheel
    "$RYU_VENV/bin/pip" install -q --disable-pip-version-check --no-build-isolation \
      -r requirements-ryu.txt
    echo "$ryu_hash" > "$RYU_VENV/.cems-req"
  fi
  site=$("$RYU_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  printf '%s\n%s\n' "$ROOT" "$ROOT/gen" > "$site/cems.pth"
fi
say "ready"
