#!/usr/bin/env bash
# Runs everything CI runs: installs what the suite needs (only if missing),
# checks formatting and lints, runs the whole test suite, and stops any
# service it started. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

# Debian packages the suite uses, installed only when missing.
# tar and chattr (e2fsprogs) serve as independent checks of exported trees,
# skopeo, umoci and podman (which loads docker archives) of exported
# images; docker-registry, busybox-static and skopeo build and serve the
# images the pull tests read from a registry on 127.0.0.1; openssl (a CA
# and a server certificate) and apache2-utils (htpasswd) set up the TLS +
# basic-auth registry the push tests use. fuse-overlayfs serves the fuse
# snapshotter's tests; uidmap (newuidmap/newgidmap) maps the rootless RUN
# tests' user namespace; openssh-client (ssh-agent, ssh-add, ssh-keygen)
# serves and checks the keys of `--ssh id=KEYFILE`.
packages=(tar git e2fsprogs skopeo umoci podman docker-registry busybox-static openssl apache2-utils fuse-overlayfs uidmap openssh-client python3 zstd)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "test.sh: missing packages ${missing[*]}: run as root or install them" >&2
    exit 1
  fi
fi

# The rootless RUN tests run bk as this unprivileged user, with a
# subordinate id range (they create it themselves when missing, too).
if [ "$(id -u)" = 0 ]; then
  user=bk-rootless-test
  id "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$user"
  for f in /etc/subuid /etc/subgid; do
    grep -q "^$user:" "$f" 2>/dev/null || echo "$user:300000:65536" >>"$f"
  done
fi

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked --all-targets

step "all checks passed"
