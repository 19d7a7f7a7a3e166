#!/bin/sh
# The deployment's Sumud init jobs (docker-compose.yml), in the Sumud image,
# as the Kafka super user. Both are idempotent: they run on every `up`.
#
#   init.sh cluster     every topic, and the first admin key (`init`)
#   init.sh alerts-key  the alerts service's key registered as an operator
#                       by an admin-signed command, once control is ready,
#                       then waited for until control lists it (`alerts-key`)
#
# Secrets (compose secrets from secrets/, readable by the container's user,
# SUMUD_KEYS_UID): admin_key (the first admin's private JWK), alerts_key
# (the alerts service's private JWK). Key ids are read from the key files,
# so the ids registered are the ones the signatures carry.
# Environment: SUMUD_ADMIN_PRINCIPAL (who holds the first admin key).
set -eu
admin_key=/run/secrets/admin_key
alerts_key=/run/secrets/alerts_key

# kid_of FILE: the `kid` of a JWK file.
kid_of() {
    kid=$(sed -n 's/.*"kid"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n 1)
    if [ -z "$kid" ]; then
        echo "init: $1 holds no kid; make keys with \`sumud keys generate --kid ... --out ...\`" >&2
        exit 1
    fi
    printf '%s\n' "$kid"
}

# listed KID: whether control lists operator key KID.
listed() {
    keys=$(sumud operators list --json)
    printf '%s\n' "$keys" | grep -qF "\"key_id\": \"$1\""
}

case ${1:-} in
cluster)
    sumud topics ensure
    admin_kid=$(kid_of "$admin_key")
    if out=$(sumud operators bootstrap --kid "$admin_kid" --principal "$SUMUD_ADMIN_PRINCIPAL" \
        --key-file "$admin_key" 2>&1); then
        echo "$out"
    else
        case $out in
        *"already active"*) echo "init: an admin key is already active; bootstrap skipped" ;;
        *)
            echo "$out" >&2
            exit 1
            ;;
        esac
    fi
    ;;
alerts-key)
    alerts_kid=$(kid_of "$alerts_key")
    if listed "$alerts_kid"; then
        echo "init: alerts key $alerts_kid is registered"
        exit 0
    fi
    # Control is ready (this job waits for its health check) and applies
    # the command within its age limit (SUMUD_COMMAND_MAX_AGE_SECS).
    sumud operators add --key "$admin_key" --kid "$alerts_kid" --principal early-warning \
        --key-file "$alerts_key" --roles declare,close
    tries=0
    until listed "$alerts_kid"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 120 ]; then
            echo "init: control has not applied the alerts key after 120 s; see \`sumud deadletter list --service control\`" >&2
            exit 1
        fi
        sleep 1
    done
    echo "init: alerts key $alerts_kid registered"
    ;;
*)
    echo "usage: init.sh cluster|alerts-key" >&2
    exit 2
    ;;
esac
