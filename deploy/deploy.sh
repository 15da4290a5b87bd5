#!/bin/sh
# Ships a release to a VPS and upgrades it with deploy/rolling-restart.sh:
# copies the binary, its SHA-256 and the script over SSH, checks the
# checksum on the host, and runs the rolling restart there as root. The
# GitHub workflow (.github/workflows/deploy.yml) calls it; an operator can
# too.
#
#   deploy.sh HOST BINARY
#
# HOST is an SSH destination (user@host; the user may sudo without a
# password), or "local" to run the rolling restart on this machine without
# SSH (the rehearsal does). Settings: SSH (default "ssh"), SCP (default
# "scp"), SUDO (default "sudo" over SSH, "" locally), and the VECTABASE_* and
# HEALTH_* variables of rolling-restart.sh, passed through.
set -eu

host=${1:?usage: deploy.sh HOST BINARY}
binary=${2:?usage: deploy.sh HOST BINARY}
here=$(cd "$(dirname "$0")" && pwd)
ssh_cmd=${SSH:-ssh}
scp_cmd=${SCP:-scp}

[ -f "$binary" ] || { echo "deploy: $binary not found" >&2; exit 1; }
sum=$(sha256sum "$binary" | cut -d ' ' -f 1)
echo "deploy: $(basename "$binary") sha256 $sum"

# The variables rolling-restart.sh reads, passed on as assignments.
passthrough() {
	for v in VECTABASE_BIN VECTABASE_CONFIG_DIR VECTABASE_INSTANCES VECTABASE_RESTART HEALTH_TIMEOUT HEALTH_OK HEALTH_INTERVAL; do
		eval "val=\${$v-}"
		# shellcheck disable=SC2154
		if [ -n "$val" ]; then
			printf "%s='%s' " "$v" "$val"
		fi
	done
}

if [ "$host" = local ]; then
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' EXIT
	cp "$binary" "$stage/vectabase"
	cp "$here/rolling-restart.sh" "$stage/"
	(cd "$stage" && echo "$sum  vectabase" | sha256sum -c --quiet)
	chmod 0755 "$stage/vectabase"
	${SUDO:-} sh "$stage/rolling-restart.sh" "$stage/vectabase"
	exit $?
fi

stage=/tmp/vectabase-deploy-$sum
# The remote shell expands nothing of ours: every value is quoted here.
$ssh_cmd "$host" "mkdir -p '$stage' && chmod 0700 '$stage'"
$scp_cmd "$binary" "$host:$stage/vectabase"
$scp_cmd "$here/rolling-restart.sh" "$host:$stage/rolling-restart.sh"
$ssh_cmd "$host" "cd '$stage' && echo '$sum  vectabase' | sha256sum -c --quiet && chmod 0755 vectabase && ${SUDO-sudo} env $(passthrough) sh '$stage/rolling-restart.sh' '$stage/vectabase'; rc=\$?; rm -rf '$stage'; exit \$rc"
