#!/bin/sh
# The deployment's Sumud init job (docker-compose.yml, `init`, in the Sumud
# image, as the Kafka super user): creates every topic, bootstraps the first
# admin key, and registers the alerts service's key as an operator, so that
# the services start on a ready cluster. Idempotent: it runs on every `up`.
#
# Secrets (compose secrets, from files under secrets/): admin_key (the first
# admin's private JWK) and alerts_key (the alerts service's private JWK).
# Environment: SUMUD_ADMIN_KID, SUMUD_ADMIN_PRINCIPAL, SUMUD_ALERTS_KID.
set -eu
admin_key=/run/secrets/admin_key
alerts_key=/run/secrets/alerts_key

sumud topics ensure

if out=$(sumud operators bootstrap --kid "$SUMUD_ADMIN_KID" --principal "$SUMUD_ADMIN_PRINCIPAL" \
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

# Registered once: control applies the admin-signed command when it starts
# (right after this job), and lists the key from then on.
if sumud operators list --json | grep -q "\"key_id\": \"$SUMUD_ALERTS_KID\""; then
    echo "init: alerts key $SUMUD_ALERTS_KID is registered"
else
    sumud operators add --key "$admin_key" --kid "$SUMUD_ALERTS_KID" --principal early-warning \
        --key-file "$alerts_key" --roles declare,close
fi
