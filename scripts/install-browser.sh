#!/usr/bin/env bash
# Headless Chromium for the report's rendering test (tests/test_report_render.py).
#
# Installs Debian's `chromium` package when no Chromium/Chrome is on PATH and this machine can
# install system packages (root, or password-less sudo, with apt-get). Otherwise it says so and
# the rendering test is skipped with that reason; nothing else depends on a browser.
set -uo pipefail

for b in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "rait: no Chromium and no apt-get; the report rendering test will be skipped" >&2
  exit 0
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    echo "rait: no Chromium and not root; the report rendering test will be skipped" \
      "(install it with: sudo apt-get install chromium)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
install() { "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
if ! install; then
  "${SUDO[@]}" apt-get update -qq >/dev/null && install
fi
if command -v chromium >/dev/null 2>&1; then
  echo "rait: installed $(chromium --version 2>/dev/null | head -1)"
else
  echo "rait: could not install Chromium; the report rendering test will be skipped" >&2
fi
exit 0
