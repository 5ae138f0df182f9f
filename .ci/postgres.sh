#!/usr/bin/env bash
# Make sure a PostgreSQL answers on 127.0.0.1:5432 (trust auth, database test); start or install one if not.
set -u
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
ready && exit 0
if ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
for _ in $(seq 1 20); do ready && break; sleep 0.5; done
if ! ready; then
    echo "no PostgreSQL answering; installing one from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null || exit 1
    v=$(ls /etc/postgresql | head -n1)
    sed -i 's/^\(host.*\)scram-sha-256$/\1trust/; s/^\(host.*\)md5$/\1trust/; s/^\(local.*\)peer$/\1trust/' /etc/postgresql/"$v"/main/pg_hba.conf
    # the package may have started the cluster already: restart so the trust rules apply
    pg_ctlcluster --skip-systemctl-redirect "$v" main restart || pg_ctlcluster --skip-systemctl-redirect "$v" main start
    for _ in $(seq 1 40); do ready && break; sleep 0.5; done
fi
ready || { echo "PostgreSQL still not answering on 127.0.0.1:5432" >&2; exit 1; }
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null
