#!/usr/bin/env bash
# The steps of the Airut sandbox GitHub Action (action.yml at the
# repository root), one subcommand per step, so that they run and are
# tested outside GitHub too:
#
#   run.sh prepare   podman, airut-sandbox built from this checkout, the
#                    trusted branch fetched; outputs config-ref and the
#                    image cache's key and directory
#   run.sh image     load the image restored from the cache, or build it
#                    and save it for the cache
#   run.sh run       the command in the sandbox; its exit code is the step's
#
# Inputs come as environment variables (action.yml maps them): INPUT_COMMAND,
# INPUT_CONFIG_REF, INPUT_CACHE, INPUT_SANDBOX_ARGS, INPUT_TOKEN,
# DEFAULT_BRANCH, CACHE_HIT, CONFIG_REF; and GitHub's own: GITHUB_WORKSPACE,
# GITHUB_ACTION_PATH, GITHUB_OUTPUT, GITHUB_BASE_REF, GITHUB_SERVER_URL,
# RUNNER_TEMP.
#
# prepare and image run on the runner before any code of the pull request
# does. run hands the workspace to that code: nothing may run git or
# anything else of the workspace on the runner after it.
set -euo pipefail

die() {
	echo "::error title=airut-sandbox::$*" >&2
	exit 125
}

state="${RUNNER_TEMP:?RUNNER_TEMP is not set: run.sh runs as a step of action.yml}/airut-sandbox"
bin="$state/bin"
cache_dir="$state/image-cache"
workspace="${GITHUB_WORKSPACE:?GITHUB_WORKSPACE is not set}"

output() {
	echo "$1=$2" >>"${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"
}

install_podman() {
	command -v podman >/dev/null && return
	command -v apt-get >/dev/null || die "podman is not installed and this runner has no apt-get: install podman before this action"
	echo "podman is not installed: installing it"
	local sudo=()
	[ "$(id -u)" = 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman uidmap slirp4netns >/dev/null
	command -v podman >/dev/null || die "podman could not be installed"
}

build() {
	command -v go >/dev/null || die "go is not on PATH (the action's setup-go step installs it)"
	mkdir -p "$bin"
	# airut-proxy goes into a FROM scratch image: static.
	(cd "${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}" &&
		CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/airut-sandbox ./cmd/airut-proxy)
}

# The sandboxed command can read the workspace's .git: a token left there
# by the checkout would be the command's to use.
refuse_persisted_credentials() {
	if git config --local --get-regexp '^http\..*\.extraheader$' >/dev/null; then
		die "the checkout left a credential in .git/config (http.*.extraheader), which the sandboxed command could read: use actions/checkout with 'persist-credentials: false'"
	fi
	local urls
	urls=$(git config --local --get-regexp '^remote\..*\.url$' || true)
	if grep -Eq '://[^/@]+@' <<<"$urls"; then
		die "a remote URL in .git/config holds a credential, which the sandboxed command could read: check out without it"
	fi
}

# The branch whose .airut/ applies: the config-ref input (by default the
# pull request's base branch), else the repository's default branch.
trusted_branch() {
	local b="${INPUT_CONFIG_REF:-${GITHUB_BASE_REF:-${DEFAULT_BRANCH:-}}}"
	b="${b#refs/heads/}"
	[ -n "$b" ] || die "no config-ref: set the input to a branch of origin (on pull_request events it is the base branch)"
	git check-ref-format --branch "$b" >/dev/null 2>&1 || die "config-ref '$b' is not a branch name"
	echo "$b"
}

fetch_trusted() {
	local branch=$1 depth=() auth=()
	git remote get-url origin >/dev/null 2>&1 || die "the workspace has no remote named origin: check it out with actions/checkout first"
	[ "$(git rev-parse --is-shallow-repository)" = true ] && depth=(--depth=1)
	local server="${GITHUB_SERVER_URL:-https://github.com}"
	if [ -n "${INPUT_TOKEN:-}" ] && [[ "$(git remote get-url origin)" == "$server/"* ]]; then
		# Through git's environment for this one command, never into
		# .git/config.
		auth=(GIT_CONFIG_COUNT=1 "GIT_CONFIG_KEY_0=http.$server/.extraheader"
			"GIT_CONFIG_VALUE_0=AUTHORIZATION: basic $(printf 'x-access-token:%s' "$INPUT_TOKEN" | base64 -w0)")
	fi
	env "${auth[@]}" git fetch --quiet --no-tags --no-recurse-submodules "${depth[@]}" \
		origin "+refs/heads/$branch:refs/remotes/origin/$branch" ||
		die "could not fetch the trusted branch '$branch' from origin"
}

prepare() {
	# A second use in one job would run git and the build on a workspace
	# that sandboxed code has written (hooks, config, refs).
	[ ! -e "$state/ran" ] || die "sandboxed code has already run in this job's workspace: use the action once per job, as its last step (several commands go into one 'command')"
	install_podman
	build
	cd "$workspace"
	refuse_persisted_credentials
	local branch ref
	branch=$(trusted_branch)
	fetch_trusted "$branch"
	ref="refs/remotes/origin/$branch"
	echo "Sandbox rules (.airut/) from origin/$branch at commit $(git rev-parse "$ref")"
	output config-ref "$ref"
	if [ "${INPUT_CACHE:-true}" = true ]; then
		local hash tools
		hash=$("$bin/airut-sandbox" image hash --config-ref "$ref")
		# The image also holds what this airut-sandbox adds to it; a new
		# day is a new key, so no cached image is older than
		# airut-sandbox's default --max-image-age (24 h) and none is
		# rebuilt on every run once it ages.
		tools=$(cat "$bin/airut-sandbox" "$bin/airut-proxy" | sha256sum | cut -c1-12)
		output cache-key "airut-sandbox-image-${hash:0:32}-$tools-$(date -u +%Y%m%d)"
		output cache-dir "$cache_dir"
	fi
}

image() {
	cd "$workspace"
	if [ "${CACHE_HIT:-}" = true ]; then
		"$bin/airut-sandbox" image load "$cache_dir" && return
		echo "::warning title=airut-sandbox::the cached image did not load: building it"
	fi
	rm -rf "$cache_dir"
	"$bin/airut-sandbox" image save --config-ref "${CONFIG_REF:?CONFIG_REF is not set}" "$cache_dir"
}

run() {
	[ -n "${INPUT_COMMAND:-}" ] || die "the command input is empty"
	mkdir -p "$state"
	: >"$state/ran"
	local args=()
	read -r -d '' -a args <<<"${INPUT_SANDBOX_ARGS:-}" || true
	cd "$workspace"
	exec "$bin/airut-sandbox" run --config-ref "${CONFIG_REF:?CONFIG_REF is not set}" "${args[@]}" -- sh -ec "$INPUT_COMMAND"
}

case "${1:-}" in
prepare | image | run) "$1" ;;
*) die "usage: run.sh prepare|image|run" ;;
esac
