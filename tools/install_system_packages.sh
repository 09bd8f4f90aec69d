#!/bin/sh
# Install the Debian/Ubuntu packages the hardware bindings need (libiio for PlutoSDR, UHD for
# USRP), if any is missing: directly as root, else with `sudo -n` (no password prompt). When
# neither works (or this is not a Debian-like system), print exactly what to run and carry on:
# everything except the real-library tests and real radios works without them, and those
# tests are skipped naming the package.
PKGS="libiio0 libiio-utils python3-libiio iiod python3-uhd uhd-host"

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system packages: not a Debian/Ubuntu system (no dpkg/apt-get); install the equivalents of"
    echo "  $PKGS"
    echo "by hand for PlutoSDR/USRP support; carrying on without them."
    exit 0
fi

missing=""
for p in $PKGS; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
    [ "$status" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = "0" ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "system packages missing:$missing"
    echo "  cannot install them here (not root, and sudo needs a password). Run:"
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing"
    echo "  then 'make env' again. Carrying on: the tests that need them are skipped, naming the package."
    exit 0
fi

echo "system packages: installing$missing"
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends $missing; }; then
    echo "system packages: apt-get failed (see above); carrying on without$missing."
    echo "  Retry with: sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing"
fi
exit 0
