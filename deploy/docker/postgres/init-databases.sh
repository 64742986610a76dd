#!/usr/bin/env bash
# Run once by the postgres image on an empty data folder (docker-entrypoint-initdb.d):
# one role and one database per service, each service owning only its own database.
# KANOL_DATABASES lists "role:password" pairs; the database is named after the role.
set -euo pipefail

for pair in ${KANOL_DATABASES:?KANOL_DATABASES lists role:password pairs}; do
    role=${pair%%:*}
    password=${pair#*:}
    echo "init-databases: role and database ${role}"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v role="$role" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
done
