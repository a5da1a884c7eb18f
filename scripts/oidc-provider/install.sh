#!/usr/bin/env bash
# Install the test OpenID provider's npm packages (oidc-provider, pinned by
# package-lock.json) and link them as scripts/oidc-provider/node_modules.
#
# The packages go into a cache outside the clone, one directory per hash of
# package.json + package-lock.json:
#   ${RENTIFY_OIDC_PROVIDER_CACHE:-~/.cache/rentify-oidc-provider}/<hash>/node_modules
# so a fresh clone on the same machine reuses them, and a changed lock file gets a
# fresh `npm ci`. Idempotent; quick (no network) when already installed.
#
# Needs node >= 20.19 and npm. Prints the directory of server.mjs on stdout; the
# tests find it through OIDC_PROVIDER_DIR (scripts/test.sh exports it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${RENTIFY_OIDC_PROVIDER_CACHE:-$HOME/.cache/rentify-oidc-provider}

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "oidc-provider/install.sh: $tool not found (need Node.js >= 20.19 with npm)" >&2; exit 1; }
done

hash=$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-16)
dest=$cache/$hash

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # concurrent runs (two clones, two test scripts) install once

if [[ ! -f $dest/.installed ]]; then
  echo "oidc-provider/install.sh: npm ci into $dest" >&2
  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$here/package.json" "$here/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$dest/.installed"
fi

# node resolves `import 'oidc-provider'` from server.mjs's directory upwards.
if [[ "$(readlink "$here/node_modules" 2>/dev/null || true)" != "$dest/node_modules" ]]; then
  rm -rf "$here/node_modules"
  ln -s "$dest/node_modules" "$here/node_modules"
fi

echo "$here"
