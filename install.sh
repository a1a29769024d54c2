#!/usr/bin/env bash
# Builds bk in release mode and installs it with its shell completions.
#   PREFIX   where to install (default /usr/local as root, ~/.local otherwise)
# Safe to run again: every step overwrites what the last run installed.
set -euo pipefail
cd "$(dirname "$0")"

fail() { echo "install.sh: $*" >&2; exit 1; }

command -v cargo >/dev/null || fail "cargo not found: install a Rust toolchain (https://rustup.rs) first"

if [ "$(id -u)" = 0 ]; then
  PREFIX=${PREFIX:-/usr/local}
  bash_dir=/usr/share/bash-completion/completions
  zsh_dir=/usr/local/share/zsh/site-functions
  fish_dir=/usr/share/fish/vendor_completions.d
else
  PREFIX=${PREFIX:-$HOME/.local}
  bash_dir=${XDG_DATA_HOME:-$HOME/.local/share}/bash-completion/completions
  zsh_dir=${XDG_DATA_HOME:-$HOME/.local/share}/zsh/site-functions
  fish_dir=${XDG_CONFIG_HOME:-$HOME/.config}/fish/completions
fi

echo "==> building bk (release)"
cargo build --release --locked --bin bk || fail "cargo build failed (see above)"
target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="${target_dir:-target}/release/bk"
[ -x "$bin" ] || fail "built binary not found at $bin"

echo "==> generating completions into completions/"
mkdir -p completions
"$bin" completion bash > completions/bk.bash
"$bin" completion zsh > completions/_bk
"$bin" completion fish > completions/bk.fish

echo "==> installing to $PREFIX/bin/bk"
install -d "$PREFIX/bin" || fail "cannot create $PREFIX/bin (set PREFIX to a writable directory)"
install -m 0755 "$bin" "$PREFIX/bin/bk.new" && mv -f "$PREFIX/bin/bk.new" "$PREFIX/bin/bk"
install -D -m 0644 completions/bk.bash "$bash_dir/bk"
install -D -m 0644 completions/_bk "$zsh_dir/_bk"
install -D -m 0644 completions/bk.fish "$fish_dir/bk.fish"

echo "==> installed $("$PREFIX/bin/bk" --version)"
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "note: $PREFIX/bin is not on your PATH" ;;
esac
