# Sourced by the bench scripts: starts Debian's docker-registry on a free
# 127.0.0.1 port with its storage under the given directory, waits until
# it answers, and sets $host (host:port), $port and $registry_pid (the
# caller's cleanup kills it).
start_registry() {
  dir=$1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  host="127.0.0.1:$port"
  cat > "$dir/registry.yml" <<YML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: $host
YML
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "the registry did not start: $(cat "$dir/registry.log")" >&2
  return 1
}
