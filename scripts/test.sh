#!/usr/bin/env bash
# Run Rentify's whole test suite against real services.
#
# 1. brings up PostgreSQL/PostGIS, Redis and NATS (scripts/dev-services.sh);
# 2. exports the connection URLs (also as TEST_* for the test harness);
# 3. drops test databases left behind by earlier, interrupted runs;
# 4. installs the test tools (openapi-spec-validator, in a venv under ~/.cache;
#    the test OpenID provider, npm oidc-provider, under ~/.cache too);
# 5. runs cargo nextest (or cargo test when nextest is not installed).
#
# Usage: scripts/test.sh [extra runner args...]   e.g. scripts/test.sh -E 'test(booking)'
# The exit code is the test runner's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Empty counts as unset: the tests always use the real services.
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/rentify}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-$DATABASE_URL}
export TEST_REDIS_URL=${TEST_REDIS_URL:-$REDIS_URL}
export TEST_NATS_URL=${TEST_NATS_URL:-$NATS_URL}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/rentify-target}

scripts/dev-services.sh

# Tools the tests call: openapi-spec-validator (PyPI) checks that the generated
# document is valid OpenAPI 3.1; aiosmtpd (PyPI) is the real SMTP server the
# notifications tests send email to. Installed once into a venv outside the clone.
venv=${RENTIFY_VENV:-$HOME/.cache/rentify-venv}
if [[ ! -x $venv/bin/openapi-spec-validator ]]; then
  echo "test.sh: installing openapi-spec-validator into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check openapi-spec-validator
fi
if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
  echo "test.sh: installing aiosmtpd into $venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check aiosmtpd
fi
export OPENAPI_SPEC_VALIDATOR=$venv/bin/openapi-spec-validator
export AIOSMTPD_PYTHON=$venv/bin/python
# A real OpenID provider (npm oidc-provider) for the OIDC sign-in tests; npm ci into ~/.cache.
OIDC_PROVIDER_DIR=$(scripts/oidc-provider/install.sh)
export OIDC_PROVIDER_DIR

# Leftover per-test databases (rentify_test_*) from runs that were killed. Templates
# (rentify_tpl_*) are kept on purpose: they are reused while migrations are unchanged.
# Databases someone is connected to are left alone (another run may be using them).
admin_url=$(sed -E 's|^([a-z]+://[^/?]*)(/[^?]*)?|\1/postgres|' <<<"$DATABASE_URL")
psql "$admin_url" -XAtq <<'SQL' || echo "test.sh: warning: could not drop leftover test databases" >&2
SELECT format('DROP DATABASE %I', d.datname)
FROM pg_database d
WHERE d.datname LIKE 'rentify\_test\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname) \gexec
SQL

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
exit "$status"
