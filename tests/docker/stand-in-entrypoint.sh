#!/bin/sh
# `postgres`: initialise PGDATA from POSTGRES_USER/PASSWORD/DB once, then serve on all
# addresses with password logins. `redis-server ARGS`: Redis as the official image runs it.
# `server DIR ...` (minio/minio's command): an S3-compatible server on port 9000, moto's, which
# keeps objects in memory and ignores the rest. Anything else runs as given (`mc`, `sh -c`).
set -eu
case "$1" in
postgres)
    PGDATA=/var/lib/postgresql/data
    mkdir -p "$PGDATA" /var/run/postgresql
    chown postgres:postgres "$PGDATA" /var/run/postgresql
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        printf '%s\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
        chown postgres /tmp/pwfile
        runuser -u postgres -- initdb -D "$PGDATA" --username="$POSTGRES_USER" \
            --pwfile=/tmp/pwfile --encoding=UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm /tmp/pwfile
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        runuser -u postgres -- pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        runuser -u postgres -- createdb --username="$POSTGRES_USER" "$POSTGRES_DB"
        runuser -u postgres -- pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    exec runuser -u postgres -- postgres -D "$PGDATA" -c listen_addresses='*'
    ;;
redis-server)
    shift
    exec redis-server --protected-mode no --dir /data "$@"
    ;;
server)
    exec /opt/s3/bin/moto_server -H 0.0.0.0 -p 9000
    ;;
*)
    exec "$@"
    ;;
esac
