#!/usr/bin/env bash
# Run `serin demo` on this machine: no Kubernetes needed. Installs Prometheus and nginx
# (Debian/Ubuntu packages) when they are missing, builds serin, runs the demo.
# Everything the demo starts listens on 127.0.0.1 only and is stopped when it ends.
set -euo pipefail

cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (apt-get)..."
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # The packages' own services are not used (and need not start): the demo runs its
  # own instances with generated configs in a scratch directory.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi

cargo build --bins
exec target/debug/serin demo "$@"
