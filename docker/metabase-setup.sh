#!/bin/sh
# One-off set-up of the Metabase in docker-compose.yml (service metabase-setup), through
# Metabase's REST API (Metabase reads no database connections from its environment):
#   1. on a new Metabase, create the admin user (POST /api/setup with the setup token);
#      on one already set up, log in as that admin (POST /api/session);
#   2. register the crm360 warehouse, connected as the read-only role bi_reader and
#      showing the published schema marts only, unless a database of that name exists.
# Safe to run again: `docker compose run --rm metabase-setup`.
#
# Environment: MB_URL (default http://metabase:3000), MB_ADMIN_EMAIL, MB_ADMIN_PASSWORD,
# CRM360_BI_READER_PASSWORD, and optionally MB_WAREHOUSE_HOST / _PORT / _DB and
# MB_DATABASE_NAME. Needs curl, sed and grep (the curlimages/curl image has them).
set -eu

MB_URL="${MB_URL:-http://metabase:3000}"
WAREHOUSE_HOST="${MB_WAREHOUSE_HOST:-warehouse}"
WAREHOUSE_PORT="${MB_WAREHOUSE_PORT:-5432}"
WAREHOUSE_DB="${MB_WAREHOUSE_DB:-crm360}"
DATABASE_NAME="${MB_DATABASE_NAME:-crm360 warehouse}"

fail() { echo "metabase-setup: $*" >&2; exit 1; }

for var in MB_ADMIN_EMAIL MB_ADMIN_PASSWORD CRM360_BI_READER_PASSWORD; do
    eval "value=\${$var:-}"
    [ -n "$value" ] || fail "$var is not set (see .env.example)"
    # the values are written into JSON below as they are
    case "$value" in *'"'*|*'\'*) fail "$var must not contain a double quote or a backslash" ;; esac
done

# a JSON string field of a flat response: json_field <name> <json>
json_field() { printf '%s' "$2" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

echo "metabase-setup: waiting for $MB_URL"
tries=0
until curl -fsS "$MB_URL/api/health" 2>/dev/null | grep -q '"ok"'; do
    tries=$((tries + 1))
    [ "$tries" -le 60 ] || fail "Metabase at $MB_URL is not healthy after 5 minutes"
    sleep 5
done

properties=$(curl -fsS "$MB_URL/api/session/properties")
if printf '%s' "$properties" | grep -q '"has-user-setup":true'; then
    echo "metabase-setup: Metabase is set up; logging in as $MB_ADMIN_EMAIL"
    response=$(curl -sS -H 'Content-Type: application/json' -X POST "$MB_URL/api/session" \
        -d "{\"username\": \"$MB_ADMIN_EMAIL\", \"password\": \"$MB_ADMIN_PASSWORD\"}")
else
    token=$(json_field setup-token "$properties")
    [ -n "$token" ] || fail "Metabase is not set up but gave no setup token"
    echo "metabase-setup: creating the admin user $MB_ADMIN_EMAIL"
    response=$(curl -sS -H 'Content-Type: application/json' -X POST "$MB_URL/api/setup" -d "{
        \"token\": \"$token\",
        \"user\": {\"email\": \"$MB_ADMIN_EMAIL\", \"password\": \"$MB_ADMIN_PASSWORD\",
                   \"first_name\": \"crm360\", \"last_name\": \"admin\", \"site_name\": \"crm360\"},
        \"prefs\": {\"site_name\": \"crm360\", \"allow_tracking\": false}}")
fi
session=$(json_field id "$response")
[ -n "$session" ] || fail "no session from Metabase: $response"

databases=$(curl -fsS -H "X-Metabase-Session: $session" "$MB_URL/api/database")
if printf '%s' "$databases" | grep -q "\"name\":\"$DATABASE_NAME\""; then
    echo "metabase-setup: database '$DATABASE_NAME' is registered already; nothing to do"
    exit 0
fi

echo "metabase-setup: registering $WAREHOUSE_HOST:$WAREHOUSE_PORT/$WAREHOUSE_DB as bi_reader (schema marts)"
answer=$(mktemp)
trap 'rm -f "$answer"' EXIT
status=$(curl -sS -o "$answer" -w '%{http_code}' -H 'Content-Type: application/json' \
    -H "X-Metabase-Session: $session" -X POST "$MB_URL/api/database" -d "{
    \"engine\": \"postgres\",
    \"name\": \"$DATABASE_NAME\",
    \"details\": {\"host\": \"$WAREHOUSE_HOST\", \"port\": $WAREHOUSE_PORT, \"dbname\": \"$WAREHOUSE_DB\",
                  \"user\": \"bi_reader\", \"password\": \"$CRM360_BI_READER_PASSWORD\", \"ssl\": false,
                  \"schema-filters-type\": \"inclusion\", \"schema-filters-patterns\": \"marts\"}}")
case "$status" in
    2*) echo "metabase-setup: done; the marts appear once the pipeline has published them" ;;
    *) fail "registering the warehouse failed (HTTP $status): $(cat "$answer")
If bi_reader cannot log in: the warehouse creates it on its first start, an older warehouse
volume at the next pipeline run; then run again: docker compose run --rm metabase-setup" ;;
esac
