#!/bin/sh
# The one user PgBouncer lets in, with the password from the environment; then PgBouncer in the foreground.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
printf '"postgres" "%s"\n' "$POSTGRES_PASSWORD" > /tmp/userlist.txt
exec /usr/sbin/pgbouncer /etc/pgbouncer/pgbouncer.ini
