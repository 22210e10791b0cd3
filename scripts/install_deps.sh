#!/usr/bin/env bash
# System packages Transcode Flow needs on Debian 12, installed only if missing.
# Runs as root (the README's set-up) or through sudo.
set -euo pipefail
# Delivery: nginx (Debian's build has ngx_http_secure_link_module), openssl,
# chromium (player test, driven by Playwright), wrk (make bench), pebble +
# certbot (Let's Encrypt flow tested against a local ACME server).
packages=(ffmpeg postgresql python3-venv python3-dev ca-certificates curl
          nginx openssl chromium wrk pebble certbot)
missing=()
# npm packs the vendored hls.js; a Node.js that ships its own npm (NodeSource) is fine.
command -v npm >/dev/null || packages+=(npm)
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing system packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts a cluster on install; tests start their own throw-away one.
  command -v systemctl >/dev/null && $sudo systemctl disable --now postgresql >/dev/null 2>&1 || true
  # Same for nginx: the stack and the tests run their own from rendered configs.
  command -v systemctl >/dev/null && $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
fi
