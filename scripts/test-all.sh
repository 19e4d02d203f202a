#!/usr/bin/env bash
# The whole test suite on a fresh clone of a fresh machine (the README's test command; CI's
# .ci/run calls it): installs what the tests need that npm does not bring (Debian's Chromium,
# rsync, OpenStack Swift; as root, or through sudo), starts Swift, then runs `npm ci && npm test`.
# Without these, `npm test` alone skips the tests that need them and says how to install each.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

echo "== node $(node --version), npm $(npm --version)"
npm ci --no-audit --no-fund

apt_install() {
  if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
    echo "test-all: $* missing, and installing it needs root or sudo (or: apt-get install -y $*)" >&2
    exit 1
  fi
  # sudo's env_reset drops DEBIAN_FRONTEND: pass it through env. Stale package lists: update, retry.
  local install=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@")
  "${install[@]}" || { $SUDO apt-get update && "${install[@]}"; }
}

# Debian's Chromium for the browser tests (test/browser*.test.ts, test/serve-browser.test.ts),
# driven by playwright-core, which never downloads a browser of its own.
[ -x /usr/bin/chromium ] || apt_install chromium

# rsync, for the copied-cache test (a cache copied with rsync -a is still hubcache's).
command -v rsync >/dev/null || apt_install rsync

# OpenStack Swift with its S3 API (Debian packages, installed by the script if missing), for the
# object-storage tests. s3rver and the GCS JSON API server run inside the test processes.
SWIFT_DIR=$(mktemp -d)
trap 'bash scripts/swift-s3.sh stop "$SWIFT_DIR" 8090 || true' EXIT
HUBCACHE_TEST_SWIFT_ENDPOINT=$(bash scripts/swift-s3.sh start "$SWIFT_DIR" 8090)
export HUBCACHE_TEST_SWIFT_ENDPOINT
echo "== Swift S3 endpoint: $HUBCACHE_TEST_SWIFT_ENDPOINT"

npm test
