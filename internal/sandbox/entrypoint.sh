#!/bin/sh
# Airut sandbox entrypoint: marks the environment as sandboxed, waits for
# the task to be ready when told to, makes the per-task proxy CA trusted
# when one is mounted, then becomes the command.
export IS_SANDBOX=1
# A container started before its task was ready (the workspace still being
# cloned, the proxy not yet claimed) waits here for the runner's "go", the
# first line of its input; the rest of the input is the command's. An
# input closed before it means the task failed: the command never runs.
# read takes one byte at a time from a pipe, so nothing of the rest is lost.
if [ "${AIRUT_GATE:-}" = 1 ]; then
	unset AIRUT_GATE
	if ! IFS= read -r airut_gate || [ "$airut_gate" != go ]; then
		echo "airut-entrypoint: the task was not started" >&2
		exit 125
	fi
	unset airut_gate
fi
ca=/etc/airut/proxy-ca.pem
if [ -f "$ca" ]; then
	if command -v update-ca-certificates >/dev/null 2>&1 && [ -d /usr/local/share/ca-certificates ]; then
		cp "$ca" /usr/local/share/ca-certificates/airut-proxy-ca.crt 2>/dev/null &&
			update-ca-certificates >/dev/null 2>&1
	fi
	# Clients that ignore the system store (Node, Python requests, curl
	# builds with their own bundle) are pointed at a bundle that includes the
	# CA. The system bundle is kept so nothing else breaks.
	bundle=/tmp/airut-ca-bundle.pem
	: >"$bundle"
	for sys in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
		if [ -f "$sys" ]; then
			cat "$sys" >>"$bundle"
			break
		fi
	done
	cat "$ca" >>"$bundle"
	export SSL_CERT_FILE="$bundle" NODE_EXTRA_CA_CERTS="$ca" REQUESTS_CA_BUNDLE="$bundle" \
		CURL_CA_BUNDLE="$bundle" GIT_SSL_CAINFO="$bundle"
fi
if [ "$#" -eq 0 ]; then
	echo "airut-entrypoint: no command given" >&2
	exit 127
fi
exec "$@"
