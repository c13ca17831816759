#!/bin/sh
# /usr/bin/scanbridge of the Debian package: the command lives in the package's own venv.
# Run as the service's account (sudo -u scanbridge scanbridge status), it works on the
# system service's home and configuration, as the unit does, unless SCANBRIDGE_HOME is set.
VENV=/opt/scanbridge/venv
if [ ! -x "$VENV/bin/scanbridge" ]; then
    echo "scanbridge: $VENV is missing or incomplete: run sudo dpkg-reconfigure scanbridge" >&2
    exit 1
fi
if [ -z "${SCANBRIDGE_HOME:-}" ] && [ "$(id -un)" = scanbridge ]; then
    SCANBRIDGE_HOME=/var/lib/scanbridge
    SCANBRIDGE_CONFIG=${SCANBRIDGE_CONFIG:-/etc/scanbridge}
    export SCANBRIDGE_HOME SCANBRIDGE_CONFIG
fi
exec "$VENV/bin/scanbridge" "$@"
