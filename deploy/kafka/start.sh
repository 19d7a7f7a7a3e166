#!/bin/bash
# The deployment broker (docker-compose.yml runs it in the apache/kafka
# image): one KRaft node whose only listener other containers reach speaks
# SASL_PLAINTEXT with SCRAM-SHA-512, with the StandardAuthorizer denying
# whatever no ACL allows (the ACLs are deploy/kafka/init.sh's). The same
# listener settings scripts/kafka.sh uses in SASL mode, which
# tests/tests/secure_transport.rs runs the whole pipeline against.
#
# The controller listener is bound to the container's loopback: the broker
# reaches it as User:ANONYMOUS, which must therefore be a super user, and no
# other container can connect to it.
#
# Environment: SUMUD_KAFKA_ADMIN_PASSWORD (the super user `admin`, used
# between the broker and itself and by the init jobs).
set -euo pipefail
: "${SUMUD_KAFKA_ADMIN_PASSWORD:?set SUMUD_KAFKA_ADMIN_PASSWORD (secrets/deploy.env)}"
case $SUMUD_KAFKA_ADMIN_PASSWORD in
*[!A-Za-z0-9._~-]*) echo "SUMUD_KAFKA_ADMIN_PASSWORD: letters, digits and . _ ~ - only" >&2; exit 1 ;;
esac

data=/var/lib/kafka/data
conf=/tmp/sumud/server.properties
umask 077
mkdir -p /tmp/sumud
cat >"$conf" <<CONF
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@127.0.0.1:9093
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=SASL_PLAINTEXT://kafka:9092
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$SUMUD_KAFKA_ADMIN_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
log.dirs=$data
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
message.max.bytes=2000000
replica.fetch.max.bytes=2000000
CONF

# The super user's client settings, for the health check and the init job.
cat >/tmp/sumud/admin.properties <<CONF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$SUMUD_KAFKA_ADMIN_PASSWORD";
CONF

# Formatted once, on the volume's first start: the super user's SCRAM
# credentials go into the metadata log, so the broker can authenticate to
# itself; every other user is created by the init job.
if [ ! -f "$data/meta.properties" ]; then
    /opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
        --cluster-id "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" --config "$conf" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=$SUMUD_KAFKA_ADMIN_PASSWORD]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
