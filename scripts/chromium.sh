#!/usr/bin/env bash
# Installs Debian's chromium package when /usr/bin/chromium is missing: the
# dashboard's end-to-end test (tests/tests/dashboard.rs) drives it headless.
# Idempotent; called by scripts/test.sh before the tests run. Owns nothing
# on disk besides what apt-get installs.
#
# Usage: scripts/chromium.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
log chromium "installing Debian's chromium for the dashboard's browser test"
apt_install chromium
[ -x /usr/bin/chromium ] || die chromium "apt-get finished but /usr/bin/chromium is missing"
log chromium "$(/usr/bin/chromium --version 2>/dev/null || echo 'installed')"
