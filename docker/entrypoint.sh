#!/bin/sh
# Image entrypoint: `flagsvc serve` needs an external Redis (and so tokens, which `flagsvc serve` checks itself);
# without FLAGSVC_REDIS_URL it would start an embedded Redis inside the container and lose every flag with it.
# Any other command (flagctl, a shell) runs as given. `exec`, so SIGTERM reaches the server directly.
set -eu
if [ "${1:-}" = "flagsvc" ] && [ "${2:-}" = "serve" ] && [ -z "${FLAGSVC_REDIS_URL:-}" ]; then
    echo "flagsvc-entrypoint: FLAGSVC_REDIS_URL is required (e.g. redis://redis:6379/0)," \
         "with FLAGSVC_ADMIN_TOKENS and FLAGSVC_SDK_KEYS; see docker/README.md" >&2
    exit 64
fi
exec "$@"
