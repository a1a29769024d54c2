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
# serves and checks the keys of `--ssh id=KEYFILE`. qemu-user-static and
# binfmt-support register the qemu-user handlers the emulated (arm64) RUN
# tests run under.
packages=(tar git e2fsprogs skopeo umoci podman docker-registry busybox-static openssl apache2-utils fuse-overlayfs uidmap openssh-client openssh-server python3 zstd qemu-user-static binfmt-support)
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

# The emulated RUN tests: binfmt_misc mounted, qemu-aarch64 registered and
# enabled with F (fix-binary, so it works inside a step's root file
# system), and an arm64 busybox for the arm64 image they push.
binfmt=/proc/sys/fs/binfmt_misc
if [ "$(id -u)" = 0 ]; then
  if [ ! -e "$binfmt/status" ]; then
    step "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$binfmt"
  fi
  if [ ! -e "$binfmt/qemu-aarch64" ]; then
    step "registering qemu-aarch64"
    update-binfmts --import qemu-aarch64 2>/dev/null || true
    update-binfmts --enable qemu-aarch64
  elif ! grep -qx enabled "$binfmt/qemu-aarch64"; then
    step "enabling qemu-aarch64"
    update-binfmts --enable qemu-aarch64
  fi
fi
if ! grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null \
  || ! grep -q '^flags: .*F' "$binfmt/qemu-aarch64"; then
  echo "test.sh: binfmt_misc has no enabled qemu-aarch64 handler with the F flag;" \
    "run as root, or register qemu-user-static's handlers (update-binfmts --import)" >&2
  exit 1
fi
cache="${XDG_CACHE_HOME:-$HOME/.cache}/bk-test"
busybox_arm64="$cache/busybox-arm64/bin/busybox"
if [ ! -x "$busybox_arm64" ]; then
  step "fetching busybox-static:arm64 into $cache"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if [ "$(id -u)" != 0 ]; then
      echo "test.sh: run as root once (dpkg --add-architecture arm64) to fetch the arm64 busybox" >&2
      exit 1
    fi
    dpkg --add-architecture arm64
    apt-get update -qq
  fi
  mkdir -p "$cache"
  fetch=$(mktemp -d "$cache/fetch.XXXXXX")
  trap 'rm -rf "$fetch"' EXIT
  # apt drops privileges to _apt for downloads into a directory it can write.
  chmod 0777 "$fetch"
  if ! (cd "$fetch" && apt-get download -qq busybox-static:arm64); then
    [ "$(id -u)" = 0 ] || { echo "test.sh: apt-get download busybox-static:arm64 failed" >&2; exit 1; }
    apt-get update -qq
    (cd "$fetch" && apt-get download -qq busybox-static:arm64)
  fi
  dpkg-deb -x "$fetch"/busybox-static_*_arm64.deb "$fetch/root"
  rm -rf "$cache/busybox-arm64"
  mkdir -p "$cache/busybox-arm64/bin"
  mv "$fetch/root/bin/busybox" "$busybox_arm64.tmp"
  mv "$busybox_arm64.tmp" "$busybox_arm64"
  rm -rf "$fetch"
  trap - EXIT
fi
export BK_TEST_BUSYBOX_ARM64="$busybox_arm64"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test"
cargo test --locked --all-targets

step "all checks passed"
