#!/bin/sh
# The db service: on first start, a cluster whose `sandbar` role has the password from
# SANDBAR_DB_PASSWORD and a `sandbar` database; then the server, in the foreground.
set -eu
: "${SANDBAR_DB_PASSWORD:?set SANDBAR_DB_PASSWORD in .env (cp .env.example .env)}"
BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
PGDATA=/var/lib/sandbar-db/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$SANDBAR_DB_PASSWORD" > "$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U sandbar --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' \
        >> "$PGDATA/pg_hba.conf"
    echo "CREATE DATABASE sandbar" | "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
    echo "sandbar-db: created the cluster and the sandbar database"
fi
exec "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*' -k /tmp
