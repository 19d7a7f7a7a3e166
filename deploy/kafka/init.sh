#!/bin/bash
# The deployment's Kafka init job (docker-compose.yml, `kafka-init`, in the
# apache/kafka image, as the super user): one SCRAM-SHA-512 user per Sumud
# service with its password from the deployment's env file, then every ACL
# of docs/security.md ("Kafka ACLs"; tests/tests/deployment.rs keeps the two
# lists equal). Both are idempotent, so it runs on every `up`, and a changed
# service password in the env file is applied by the next one (the admin's
# is the broker's own, set when its volume was first formatted: change it
# with kafka-configs.sh first). It only adds: an ACL removed from the
# documentation must be removed from the cluster with `kafka-acls.sh --remove`.
set -euo pipefail
: "${SUMUD_KAFKA_ADMIN_PASSWORD:?set SUMUD_KAFKA_ADMIN_PASSWORD (secrets/deploy.env)}"
bootstrap=kafka:9092
props=/tmp/admin.properties
umask 077
cat >"$props" <<CONF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$SUMUD_KAFKA_ADMIN_PASSWORD";
CONF

# user NAME PASSWORD: creates or re-keys a SCRAM user. A password goes into
# a `[...]` argument, so only characters that need no quoting there.
user() {
    case $2 in
    '' | *[!A-Za-z0-9._~-]*)
        echo "the password of $1: letters, digits and . _ ~ - only, not empty" >&2
        exit 1
        ;;
    esac
    /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$bootstrap" --command-config "$props" \
        --alter --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]" \
        --entity-type users --entity-name "$1" >/dev/null
    echo "kafka-init: SCRAM user $1"
}
user sumud-alerts "${SUMUD_KAFKA_PASSWORD_ALERTS:-}"
user sumud-registry "${SUMUD_KAFKA_PASSWORD_REGISTRY:-}"
user sumud-control "${SUMUD_KAFKA_PASSWORD_CONTROL:-}"
user sumud-eligibility "${SUMUD_KAFKA_PASSWORD_ELIGIBILITY:-}"
user sumud-disbursement "${SUMUD_KAFKA_PASSWORD_DISBURSEMENT:-}"
user sumud-dashboard "${SUMUD_KAFKA_PASSWORD_DASHBOARD:-}"
user sumud-operator "${SUMUD_KAFKA_PASSWORD_OPERATOR:-}"
# The demo override (docker-compose.demo.yml) runs the provider simulator.
if [ -n "${SUMUD_KAFKA_PASSWORD_PROVIDER_SIM:-}" ]; then
    user sumud-provider-sim "$SUMUD_KAFKA_PASSWORD_PROVIDER_SIM"
fi

acl() { /opt/kafka/bin/kafka-acls.sh --bootstrap-server "$bootstrap" --command-config "$props" --add "$@" >/dev/null; }

# alerts: CAP alerts in, signed commands out
acl --allow-principal User:sumud-alerts --operation Read --topic sumud.alerts.v1 --group sumud-alerts
acl --allow-principal User:sumud-alerts --operation Write --topic sumud.control.v1 --topic sumud.deadletter.v1
# registry: household upserts in
acl --allow-principal User:sumud-registry --operation Read --topic sumud.registry.v1 --group sumud-registry
acl --allow-principal User:sumud-registry --operation Write --topic sumud.deadletter.v1
# control: signed commands in, crisis lifecycle out
acl --allow-principal User:sumud-control --operation Read --topic sumud.control.v1 --group sumud-control
acl --allow-principal User:sumud-control --operation Write --topic sumud.crisis.v1 --topic sumud.deadletter.v1
# eligibility: crises, households and partners' assistance in, entitlements out
acl --allow-principal User:sumud-eligibility --operation Read --topic sumud.crisis.v1 --topic sumud.registry.v1 --topic sumud.assistance.v1 --topic sumud.referrals.answers.v1 --group sumud-eligibility
acl --allow-principal User:sumud-eligibility --operation Write --topic sumud.entitlements.v1 --topic sumud.assistance.shared.v1 --topic sumud.referrals.v1 --topic sumud.deadletter.v1
# disbursement: crises, entitlements, payment status and field commands in; instructions and task events out
acl --allow-principal User:sumud-disbursement --operation Read --topic sumud.crisis.v1 --topic sumud.entitlements.v1 --topic sumud.payments.status.v1 --topic sumud.tasks.v1 --topic sumud.tasks.commands.v1 --group sumud-disbursement
acl --allow-principal User:sumud-disbursement --operation Write --topic sumud.payments.instructions.v1 --topic sumud.tasks.v1 --topic sumud.deadletter.v1
# field-team app: follows task events, sends signed task commands
acl --allow-principal User:sumud-field-app --operation Read --topic sumud.tasks.v1 --group sumud-field-app
acl --allow-principal User:sumud-field-app --operation Write --topic sumud.tasks.commands.v1
# partner agency adapter (one principal and group per agency): Sumud's assistance in, signed records out
acl --allow-principal User:sumud-partner-wfp --operation Read --topic sumud.assistance.shared.v1 --group sumud-partner-wfp
acl --allow-principal User:sumud-partner-wfp --operation Write --topic sumud.assistance.v1
# social-service provider adapter (one principal and group per agency): referrals in, signed answers out
acl --allow-principal User:sumud-provider-moh-rehab --operation Read --topic sumud.referrals.v1 --group sumud-provider-moh-rehab
acl --allow-principal User:sumud-provider-moh-rehab --operation Write --topic sumud.referrals.answers.v1
# provider-sim (and real provider adapters): instructions in, status out
acl --allow-principal User:sumud-provider-sim --operation Read --topic sumud.payments.instructions.v1 --group sumud-provider-sim
acl --allow-principal User:sumud-provider-sim --operation Write --topic sumud.payments.status.v1 --topic sumud.deadletter.v1
# dashboard: reads dead letters, watches every group's lag
acl --allow-principal User:sumud-dashboard --operation Read --topic sumud.deadletter.v1 --group sumud-dashboard-reader
acl --allow-principal User:sumud-dashboard --operation Describe --topic sumud.control.v1 --topic sumud.alerts.v1 --topic sumud.registry.v1 --topic sumud.crisis.v1 --topic sumud.entitlements.v1 --topic sumud.payments.instructions.v1 --topic sumud.payments.status.v1 --topic sumud.tasks.v1 --topic sumud.tasks.commands.v1 --topic sumud.assistance.v1 --topic sumud.assistance.shared.v1 --topic sumud.referrals.v1 --topic sumud.referrals.answers.v1 --group sumud-alerts --group sumud-registry --group sumud-control --group sumud-eligibility --group sumud-disbursement --group sumud-provider-sim
# operator CLI: registry imports, signed commands, CAP alerts; dead letters
acl --allow-principal User:sumud-operator --operation Write --topic sumud.registry.v1 --topic sumud.control.v1 --topic sumud.alerts.v1
acl --allow-principal User:sumud-operator --operation Read --topic sumud.deadletter.v1 --group sumud-deadletter-cli
# break-glass: replaying dead letters of the crisis and status topics
acl --allow-principal User:sumud-replay --operation Write --topic sumud.crisis.v1 --topic sumud.payments.status.v1

echo "kafka-init: users and ACLs in place"
