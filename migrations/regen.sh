#!/usr/bin/env bash
# While no release exists, the schema is one migration: regenerate it from the models.
# (After the first release, add migrations with `flask db migrate` instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f migrations/versions/0001_initial_schema.py
FLASK_APP=wsgi DATABASE_URL="sqlite:///$tmp/regen.db" .venv/bin/flask db migrate -m "initial schema" --rev-id 0001 >/dev/null
rm -rf "$tmp"
echo "regenerated migrations/versions/0001_initial_schema.py"
