#!/usr/bin/env bash
# `cargo deny check advisories` against the best RustSec database this machine has: the live one
# on GitHub when github.com answers, else the team's offline snapshot (a git bundle, see
# ../shared/rustsec/README.md), else none, which is said in one line and passes.
#
# Settings (environment):
#   CARGO_DENY       the cargo-deny binary (make passes .local/tools/bin/cargo-deny)
#   RUSTSEC_BUNDLE   the snapshot; default ../shared/rustsec/advisory-db.bundle (CI clones the
#                    repository beside that shared folder)
#   RUSTSEC_NETWORK  auto (default: ask github.com, 5 s timeout), on (skip the question),
#                    off (never use the network, as on a machine without it)
set -euo pipefail

cargo_deny=${CARGO_DENY:-cargo-deny}
bundle=${RUSTSEC_BUNDLE:-../shared/rustsec/advisory-db.bundle}
network=${RUSTSEC_NETWORK:-auto}
live_url=https://github.com/RustSec/advisory-db
root=.local/advisory-db
# cargo-deny reads <db-path>/<name>-<hash of the URL>; this is the name for its default URL.
db_name=advisory-db-3157b0e258782691

case $network in
  auto | on | off) ;;
  *) echo "RUSTSEC_NETWORK=$network: use auto, on or off" >&2; exit 2 ;;
esac

# Sets $not_live to the reason when the live database is not to be tried.
github_answers() {
  case $network in
    off) not_live="RUSTSEC_NETWORK=off"; return 1 ;;
    on) return 0 ;;
  esac
  GIT_TERMINAL_PROMPT=0 timeout 5 git ls-remote --exit-code "$live_url" HEAD >/dev/null 2>&1 \
    || { not_live="github.com did not answer (5 s timeout)"; return 1; }
}

# "commit <short hash> of <date>" for the database cloned at $1.
describe_db() {
  git -C "$1/$db_name" log -1 --format='commit %h of %cs'
}

check() {
  RUSTSEC_DB_PATH=$1 "$cargo_deny" --offline --locked check advisories
}

if github_answers; then
  # Its own directory: cargo-deny fetches from the clone's origin, which must be GitHub.
  if RUSTSEC_DB_PATH=$root/live timeout 120 "$cargo_deny" fetch db; then
    echo "==> advisories: live RustSec database ($live_url, $(describe_db "$root/live"))"
    check "$root/live"
    exit
  fi
  not_live="fetching $live_url failed"
fi

if [[ -f $bundle ]]; then
  rm -rf "$root/snapshot"
  git clone --quiet --branch main "$bundle" "$root/snapshot/$db_name"
  age_days=$(( ($(date +%s) - $(git -C "$root/snapshot/$db_name" log -1 --format=%ct)) / 86400 ))
  echo "==> advisories: RustSec snapshot $bundle ($(describe_db "$root/snapshot"), $age_days days old; live database not used: $not_live)"
  check "$root/snapshot"
else
  echo "==> advisories: NOT CHECKED: no live RustSec database ($live_url: $not_live) and no snapshot at $bundle"
fi
