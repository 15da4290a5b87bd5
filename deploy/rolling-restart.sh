#!/bin/sh
# Upgrades the vectabase instances of this machine to a new binary, one at a
# time, behind a health gate, and rolls back to the previous binary when an
# instance does not become ready. Run as root on the VPS (deploy/deploy.sh
# does, over SSH); the rolling-upgrade rehearsal (cmd/vectabase,
# TestRollingUpgradeRehearsal) runs this same script against local
# processes.
#
#   rolling-restart.sh NEW_BINARY
#
# Steps: install NEW_BINARY as VECTABASE_BIN (the running one kept as
# VECTABASE_BIN.previous); run `vectabase migrate up` (it uses
# DATABASE_DIRECT_URL from the environment file); then for each instance:
# restart it and wait until its /readyz answers 200 HEALTH_OK times in a
# row within HEALTH_TIMEOUT seconds. If an instance fails the gate, the
# previous binary goes back and every instance restarted so far is
# restarted on it (and gated again); the script exits 1.
#
# Migrations must be backward compatible (the old binary keeps serving on
# the new schema while the roll goes on); a rollback does not undo them.
#
# Settings (environment):
#   VECTABASE_BIN         /usr/local/bin/vectabase
#   VECTABASE_CONFIG_DIR  /etc/vectabase (vectabase.env, instance-N.env)
#   VECTABASE_INSTANCES   "1 2"  (systemd units vectabase@1, vectabase@2)
#   VECTABASE_RESTART     "systemctl restart"  (called with vectabase@N)
#   HEALTH_TIMEOUT        60 (seconds per instance)
#   HEALTH_OK             3  (consecutive 200s that pass the gate)
#   HEALTH_INTERVAL       1  (seconds between probes)
set -eu

new=${1:?usage: rolling-restart.sh NEW_BINARY}
bin=${VECTABASE_BIN:-/usr/local/bin/vectabase}
conf=${VECTABASE_CONFIG_DIR:-/etc/vectabase}
instances=${VECTABASE_INSTANCES:-1 2}
restart=${VECTABASE_RESTART:-systemctl restart}
timeout=${HEALTH_TIMEOUT:-60}
need_ok=${HEALTH_OK:-3}
interval=${HEALTH_INTERVAL:-1}

log() { printf '%s rolling-restart: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "$*" >&2; exit 1; }

# The value of NAME in an environment file (NAME='value' or NAME=value).
env_value() {
	sed -n "s/^$2=//p" "$1" | tail -n 1 | sed "s/^'\(.*\)'\$/\1/; s/^\"\(.*\)\"\$/\1/"
}

health_url() {
	addr=$(env_value "$conf/instance-$1.env" HTTP_ADDR)
	[ -n "$addr" ] || die "no HTTP_ADDR in $conf/instance-$1.env"
	printf 'http://%s/readyz' "$addr"
}

# gate N: 0 when instance N's /readyz answered 200 need_ok times in a row
# within the timeout.
gate() {
	url=$(health_url "$1")
	ok=0
	start=$(date +%s)
	while [ $(($(date +%s) - start)) -lt "$timeout" ]; do
		if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
			ok=$((ok + 1))
			if [ "$ok" -ge "$need_ok" ]; then
				return 0
			fi
		else
			ok=0
		fi
		sleep "$interval"
	done
	return 1
}

restart_instance() {
	log "restarting vectabase@$1"
	# Word splitting of the restart command is wanted ("systemctl restart").
	# shellcheck disable=SC2086
	$restart "vectabase@$1"
}

[ -x "$new" ] || die "$new is not an executable file"
new_version=$("$new" version | head -n 1) || die "$new does not run: $new version failed"
[ -f "$conf/vectabase.env" ] || die "no $conf/vectabase.env"

log "installing $new_version as $bin"
if [ -e "$bin" ]; then
	cp -p "$bin" "$bin.previous"
	log "previous: $("$bin.previous" version | head -n 1)"
fi
cp "$new" "$bin.new"
chmod 0755 "$bin.new"
mv -f "$bin.new" "$bin"

rollback() {
	log "rolling back to the previous binary"
	[ -e "$bin.previous" ] || die "no previous binary to roll back to"
	cp -p "$bin.previous" "$bin.new"
	mv -f "$bin.new" "$bin"
	for j in $1; do
		restart_instance "$j" || log "restart of vectabase@$j failed"
		if gate "$j"; then
			log "vectabase@$j healthy on the previous binary"
		else
			log "vectabase@$j NOT healthy on the previous binary either: look at it now"
		fi
	done
}

log "migrating (direct database connection)"
# shellcheck source=/dev/null
if ! (set -a && . "$conf/vectabase.env" && set +a && "$bin" migrate up); then
	rollback ""
	die "migrate up failed: nothing was restarted, the previous binary is back"
fi

done_list=""
for i in $instances; do
	done_list="$done_list $i"
	if ! restart_instance "$i" || ! gate "$i"; then
		log "vectabase@$i failed its health gate ($(health_url "$i"), ${timeout}s)"
		rollback "$done_list"
		die "upgrade to $new_version failed on vectabase@$i and was rolled back"
	fi
	log "vectabase@$i healthy on $new_version"
done
log "all instances run $new_version"
