#!/usr/bin/env bash
# Installs the system parts Plotline's tests and local stack need, when missing:
# redis-server, nginx, chromium (Debian packages) and node/npm (for Azurite).
# Idempotent: does nothing when everything is there. Needs root + apt-get to install;
# elsewhere it says what is missing and stops.
set -euo pipefail

declare -A want=([redis-server]=redis-server [nginx]=nginx [chromium]=chromium [npm]=npm)
missing=()
for cmd in "${!want[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("${want[$cmd]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Plotline needs these system packages: ${missing[*]}" >&2
  echo "Install them with your package manager (as root on Debian: apt-get install ${missing[*]}), then re-run." >&2
  exit 1
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts services on install; Plotline starts its own on free ports, so stop them.
for svc in redis-server nginx; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" 2>/dev/null || true; fi
done
