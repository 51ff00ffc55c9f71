#!/bin/sh
# obs-stack installer.
#
#   curl --proto '=https' --tlsv1.2 -sSf https://obs-stack.dev/install.sh | sh
#   curl ... | sh -s -- --version 0.1.0       pin a version
#   curl ... | sh -s -- --dry-run             print what it would do, change nothing
#   curl ... | sh -s -- --uninstall           remove what this script installed, and only that
#
# What it does: detects the platform (OS, arch, glibc or musl), downloads
# <base>/<version>/obs-stack-<target>.tar.gz over HTTPS only (TLS 1.2+), checks it against
# <base>/<version>/SHA256SUMS, installs `obs-stack` plus the `obs-detect` and `obs-inject`
# links into ~/.local/bin (or $OBS_STACK_INSTALL_DIR) without sudo, records what it installed
# in a manifest next to them (.obs-stack-install-manifest), and runs `obs-stack doctor`.
# It never installs Docker, never prompts, never uses sudo and sends no telemetry: the only
# requests are the three downloads above (plus <base>/latest when no version is pinned).
#
# Safety: everything is in functions and the last line calls main with an end-of-script
# marker, so a download cut anywhere runs nothing. Re-running with the installed version
# changes nothing; a new version replaces the old one with an atomic rename; a failure after
# that restores the previous version.
#
# Environment:
#   OBS_STACK_BASE_URL     release server (default below). https:// only, except http:// on
#                          127.0.0.1 / localhost / [::1] (a loopback mirror, used by tests)
#                          and file:///abs/path (a local release folder, e.g. dist/ from
#                          installer/package.sh)
#   OBS_STACK_VERSION      version to install (same as --version)
#   OBS_STACK_INSTALL_DIR  where to install (default ~/.local/bin); must be an absolute path
#   OBS_STACK_TARGET       force a target triple (e.g. x86_64-unknown-linux-musl)
#   OBS_STACK_NO_DOCTOR=1  do not run `obs-stack doctor` after installing (same as --no-doctor)
#   OBS_STACK_INSTALL_FAULT=after-swap   test hook: fail right after the new binary is in
#                          place, to exercise the rollback
set -eu

default_base_url() {
    printf '%s\n' "https://obs-stack.dev/releases"
}

usage() {
    cat <<'EOF'
obs-stack installer

Usage: install.sh [options]
       curl --proto '=https' --tlsv1.2 -sSf <base>/install.sh | sh -s -- [options]

Options:
  --version X    install version X (default: the latest release)
  --dry-run      print what would be done and change nothing
  --uninstall    remove what this script installed (listed in its manifest), and only that
  --no-doctor    do not run `obs-stack doctor` after installing
  -y, --yes      accepted for compatibility: this script never prompts
  -h, --help     this help

Environment: OBS_STACK_BASE_URL, OBS_STACK_VERSION, OBS_STACK_INSTALL_DIR, OBS_STACK_TARGET,
OBS_STACK_NO_DOCTOR (see the comments at the top of this script).
EOF
}

say() {
    printf 'obs-stack-install: %s\n' "$*"
}

warn() {
    printf 'obs-stack-install: warning: %s\n' "$*" >&2
}

err() {
    printf 'obs-stack-install: error: %s\n' "$*" >&2
    exit 1
}

need_cmd() {
    if ! command -v "$1" >/dev/null 2>&1; then
        err "need '$1' (command not found); install it and run again"
    fi
}

# Runs a command and names it when it fails.
ensure() {
    if ! "$@"; then
        err "command failed: $*"
    fi
}

# In dry-run mode prints the action, otherwise runs it (named on failure).
act() {
    if [ "$DRY_RUN" = 1 ]; then
        say "would run: $*"
    else
        ensure "$@"
    fi
}

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --version)
                # $# -ge 3: the value, then at least the end-of-script marker.
                [ $# -ge 3 ] || err "--version needs a value, e.g. --version 0.1.0"
                VERSION=$2
                shift 2
                ;;
            --version=*)
                VERSION=${1#--version=}
                shift
                ;;
            --dry-run) DRY_RUN=1; shift ;;
            --uninstall) UNINSTALL=1; shift ;;
            --no-doctor) NO_DOCTOR=1; shift ;;
            -y | --yes) shift ;;
            -h | --help) usage; exit 0 ;;
            --obs-stack-install-end)
                [ $# -eq 1 ] || err "unexpected argument '$1'"
                shift
                ;;
            *) err "unknown option '$1' (see --help)" ;;
        esac
    done
}

check_tools() {
    for _c in uname mkdir rmdir rm mv ln cp chmod mktemp tar gzip sed grep cut tr head dirname readlink; do
        need_cmd "$_c"
    done
    if command -v curl >/dev/null 2>&1; then
        DOWNLOADER=curl
    elif command -v wget >/dev/null 2>&1; then
        DOWNLOADER=wget
    else
        err "need 'curl' or 'wget' (neither was found); install one and run again"
    fi
    if command -v sha256sum >/dev/null 2>&1; then
        SHA_TOOL=sha256sum
    elif command -v shasum >/dev/null 2>&1; then
        SHA_TOOL=shasum
    elif command -v openssl >/dev/null 2>&1; then
        SHA_TOOL=openssl
    else
        err "need 'sha256sum', 'shasum' or 'openssl' to verify the download; install one and run again"
    fi
}

sha256_of() {
    case "$SHA_TOOL" in
        sha256sum) sha256sum "$1" | cut -d' ' -f1 ;;
        shasum) shasum -a 256 "$1" | cut -d' ' -f1 ;;
        openssl) openssl dgst -sha256 -r "$1" | cut -d' ' -f1 ;;
    esac
}

# HTTPS only; plain http only for a loopback mirror (tests, local release server); file://
# for a local release folder.
resolve_base_url() {
    BASE_URL=${OBS_STACK_BASE_URL:-$(default_base_url)}
    BASE_URL=${BASE_URL%/}
    case "$BASE_URL" in
        https://*)
            PROTO='=https'
            ;;
        http://*)
            _hostport=${BASE_URL#http://}
            _hostport=${_hostport%%/*}
            case "$_hostport" in
                127.0.0.1 | 127.0.0.1:* | localhost | localhost:* | '[::1]' | '[::1]:'*)
                    PROTO='=http'
                    ;;
                *)
                    err "refusing plain http for $BASE_URL: only https:// is allowed (http:// only on 127.0.0.1, localhost or [::1])"
                    ;;
            esac
            ;;
        file:///*)
            # A local release folder (installer/package.sh output): nothing crosses a network.
            [ "$DOWNLOADER" = curl ] || err "a file:// OBS_STACK_BASE_URL needs curl"
            PROTO='=file'
            ;;
        *)
            err "OBS_STACK_BASE_URL must start with https:// (got '$BASE_URL')"
            ;;
    esac
}

# download URL DEST ("-" for stdout)
download() {
    if [ "$DOWNLOADER" = curl ]; then
        curl --proto "$PROTO" --proto-redir "$PROTO" --tlsv1.2 --fail --silent --show-error \
            --location --retry 2 --connect-timeout 15 --output "$2" "$1"
    elif [ "$PROTO" = '=https' ]; then
        wget --https-only --secure-protocol=TLSv1_2 --quiet --tries=3 --timeout=15 -O "$2" "$1"
    else
        wget --quiet --tries=3 --timeout=15 -O "$2" "$1"
    fi
}

detect_platform() {
    _os=$(uname -s)
    _arch=$(uname -m)
    case "$_os" in
        Linux) ;;
        Darwin) err "macOS builds are not published yet; build from source: cargo install --git <repo> obs-stack (or cargo build --release in a clone)" ;;
        *) err "unsupported OS '$_os': obs-stack releases are built for Linux" ;;
    esac
    case "$_arch" in
        x86_64 | amd64) _arch=x86_64 ;;
        aarch64 | arm64) _arch=aarch64 ;;
        *) err "unsupported CPU architecture '$_arch': releases are built for x86_64 (build from source for others)" ;;
    esac
    LIBC=glibc
    for _f in /lib/ld-musl-*; do
        [ -e "$_f" ] && LIBC=musl
    done
    if command -v ldd >/dev/null 2>&1 && ldd --version 2>&1 | grep -qi musl; then
        LIBC=musl
    fi
    if [ -n "${OBS_STACK_TARGET:-}" ]; then
        TARGETS=$OBS_STACK_TARGET
    elif [ "$LIBC" = musl ]; then
        TARGETS="$_arch-unknown-linux-musl"
    else
        # The static musl build runs on any glibc system too: the fallback.
        TARGETS="$_arch-unknown-linux-gnu $_arch-unknown-linux-musl"
    fi
    PLATFORM="Linux $_arch ($LIBC)"
}

resolve_version() {
    if [ -z "$VERSION" ]; then
        VERSION=$(download "$BASE_URL/latest" -) ||
            err "cannot read the latest version from $BASE_URL/latest (check the network or OBS_STACK_BASE_URL)"
        VERSION=$(printf '%s' "$VERSION" | tr -d ' \t\r\n')
    fi
    VERSION=${VERSION#v}
    case "$VERSION" in
        '' | *[!0-9A-Za-z.+-]*) err "invalid version '$VERSION'" ;;
    esac
}

# Reads SHA256SUMS and lists the candidate targets it has, best first, in AVAILABLE.
list_targets() {
    SUMS=$(download "$BASE_URL/$VERSION/SHA256SUMS" -) ||
        err "cannot download $BASE_URL/$VERSION/SHA256SUMS: is $VERSION a released version?"
    AVAILABLE=""
    for _t in $TARGETS; do
        if [ -n "$(sha_for "$_t")" ]; then
            AVAILABLE="$AVAILABLE $_t"
        fi
    done
    if [ -z "$AVAILABLE" ]; then
        _avail=$(printf '%s\n' "$SUMS" | sed -n 's/.*obs-stack-\(.*\)\.tar\.gz$/\1/p' | tr '\n' ' ')
        err "release $VERSION has no build for $PLATFORM (looked for: $TARGETS; available: ${_avail:-none})"
    fi
}

sha_for() { # target -> the archive's SHA-256 from SUMS, or nothing
    printf '%s\n' "$SUMS" | grep " [* ]*obs-stack-$1\.tar\.gz\$" | head -n 1 | cut -d' ' -f1 || true
}

select_target() {
    TARGET=$1
    ARCHIVE="obs-stack-$1.tar.gz"
    EXPECTED_SHA=$(sha_for "$1")
    case "$EXPECTED_SHA" in
        *[!0-9a-f]* | '') err "malformed SHA256SUMS line for $ARCHIVE" ;;
    esac
    [ ${#EXPECTED_SHA} -eq 64 ] || err "malformed SHA256SUMS line for $ARCHIVE"
}

manifest_get() { # key -> every value, one per line
    if [ -f "$MANIFEST" ]; then
        sed -n "s/^$1=//p" "$MANIFEST"
    fi
}

# The installed copy is intact and from the same release: nothing to do.
already_installed() {
    [ -f "$MANIFEST" ] || return 1
    [ "$(manifest_get version)" = "$VERSION" ] || return 1
    # The same archive of this release (whichever candidate target was installed).
    _mt=$(manifest_get target)
    case " $AVAILABLE " in *" $_mt "*) ;; *) return 1 ;; esac
    [ "$(manifest_get archive_sha256)" = "$(sha_for "$_mt")" ] || return 1
    [ -f "$BIN" ] || return 1
    [ "$(sha256_of "$BIN")" = "$(manifest_get binary_sha256)" ] || return 1
    for _l in $(manifest_get link); do
        [ -L "$INSTALL_DIR/$_l" ] || return 1
        [ "$(readlink "$INSTALL_DIR/$_l")" = obs-stack ] || return 1
    done
    return 0
}

# Records (deepest first) the folders mkdir -p would create, so uninstall removes only them.
plan_dirs() {
    NEW_DIRS=""
    _d=$INSTALL_DIR
    while [ -n "$_d" ] && [ "$_d" != / ] && [ ! -d "$_d" ]; do
        NEW_DIRS="$NEW_DIRS$_d
"
        _d=$(dirname "$_d")
    done
}

cleanup() {
    _rc=$?
    trap - EXIT INT TERM HUP
    if [ "$ARMED" = 1 ]; then
        rollback
    fi
    if [ -n "$TMP_DIR" ] && [ -d "$TMP_DIR" ]; then
        rm -rf "$TMP_DIR"
    fi
    exit "$_rc"
}

# Puts back what was there before this run (called only after the new binary was swapped in).
rollback() {
    warn "install failed; restoring the previous state of $INSTALL_DIR"
    if [ "$HAD_BIN" = 0 ]; then
        rm -f "$BIN"
    elif [ -f "$BACKUP" ]; then
        mv -f "$BACKUP" "$BIN" || warn "could not restore $BIN from $BACKUP"
    fi
    for _l in $CREATED_LINKS; do
        rm -f "$INSTALL_DIR/$_l"
    done
    if [ "$HAD_MANIFEST" = 0 ]; then
        rm -f "$MANIFEST"
    elif [ -f "$MANIFEST_BACKUP" ]; then
        mv -f "$MANIFEST_BACKUP" "$MANIFEST" || warn "could not restore $MANIFEST from $MANIFEST_BACKUP"
    fi
    rm -f "$INSTALL_DIR/.obs-stack.new.$$" "$INSTALL_DIR/.obs-stack-install-manifest.new.$$" \
        "$INSTALL_DIR/.obs-detect.new.$$" "$INSTALL_DIR/.obs-inject.new.$$" "$MANIFEST_BACKUP"
    printf '%s' "$NEW_DIRS" | while IFS= read -r _d; do
        if [ -n "$_d" ]; then rmdir "$_d" 2>/dev/null || true; fi
    done
    ARMED=0
}

# link NAME: obs-detect -> obs-stack, replaced atomically; never clobbers a foreign file.
make_link() {
    _path="$INSTALL_DIR/$1"
    if [ -e "$_path" ] || [ -L "$_path" ]; then
        if [ -L "$_path" ] && [ "$(readlink "$_path")" = obs-stack ]; then
            LINKS="$LINKS $1"
            return 0
        fi
        if ! manifest_get link | grep -qx "$1"; then
            warn "$_path exists and was not installed by obs-stack; leaving it (run obs-stack $2 instead)"
            return 0
        fi
    fi
    ensure ln -s obs-stack "$INSTALL_DIR/.$1.new.$$"
    ensure mv -f "$INSTALL_DIR/.$1.new.$$" "$_path"
    CREATED_LINKS="$CREATED_LINKS $1"
    LINKS="$LINKS $1"
}

write_manifest() {
    _m="$INSTALL_DIR/.obs-stack-install-manifest.new.$$"
    {
        printf '# obs-stack install manifest: written by install.sh, read by install.sh --uninstall\n'
        printf 'version=%s\n' "$VERSION"
        printf 'target=%s\n' "$TARGET"
        printf 'archive_sha256=%s\n' "$EXPECTED_SHA"
        printf 'binary=obs-stack\n'
        printf 'binary_sha256=%s\n' "$(sha256_of "$BIN")"
        for _l in $LINKS; do
            printf 'link=%s\n' "$_l"
        done
        # Folders created by this run or an earlier one, deepest first.
        printf '%s' "$NEW_DIRS" | sed '/^$/d; s/^/created_dir=/'
        manifest_get created_dir | sed 's/^/created_dir=/'
    } >"$_m" || err "cannot write $_m"
    ensure mv -f "$_m" "$MANIFEST"
}

# Downloads ARCHIVE into TMP_DIR, verifies it (a mismatch is fatal), extracts it and checks
# that its binary runs here and says VERSION; sets _new. Returns 1 when it does not run.
fetch_verified() {
    say "downloading $BASE_URL/$VERSION/$ARCHIVE"
    download "$BASE_URL/$VERSION/$ARCHIVE" "$TMP_DIR/$ARCHIVE" || err "download of $BASE_URL/$VERSION/$ARCHIVE failed"
    _actual=$(sha256_of "$TMP_DIR/$ARCHIVE")
    if [ "$_actual" != "$EXPECTED_SHA" ]; then
        err "checksum mismatch for $ARCHIVE: expected $EXPECTED_SHA, got $_actual; refusing to install (nothing was changed)"
    fi
    say "verified SHA-256 $EXPECTED_SHA"
    rm -rf "$TMP_DIR/x"
    ensure mkdir "$TMP_DIR/x"
    ensure tar -xzf "$TMP_DIR/$ARCHIVE" -C "$TMP_DIR/x"
    _new="$TMP_DIR/x/obs-stack-$TARGET/obs-stack"
    if [ ! -f "$_new" ] || [ -L "$_new" ]; then
        err "$ARCHIVE does not contain obs-stack-$TARGET/obs-stack"
    fi
    ensure chmod 0755 "$_new"
    if ! _said=$("$_new" --version </dev/null 2>&1); then
        warn "the $TARGET build does not run on this machine: $_said"
        return 1
    fi
    [ "$_said" = "obs-stack $VERSION" ] || err "the downloaded binary says '$_said', expected 'obs-stack $VERSION'"
}

install_release() {
    if [ -e "$BIN" ] && [ ! -f "$MANIFEST" ]; then
        err "$BIN exists but was not installed by this script (no $MANIFEST); remove it or set OBS_STACK_INSTALL_DIR to another folder"
    fi
    plan_dirs
    if [ "$DRY_RUN" = 1 ]; then
        say "would download $BASE_URL/$VERSION/$ARCHIVE and check its SHA-256 ($EXPECTED_SHA)"
        if [ -n "$NEW_DIRS" ]; then
            say "would create $(printf '%s' "$NEW_DIRS" | tr '\n' ' ')"
        fi
        if [ -f "$BIN" ]; then
            say "would replace $BIN ($(manifest_get version)) with $VERSION (atomic rename)"
        else
            say "would install $BIN ($VERSION)"
        fi
        say "would link $INSTALL_DIR/obs-detect and $INSTALL_DIR/obs-inject -> obs-stack"
        say "would record them in $MANIFEST"
        [ "$NO_DOCTOR" = 1 ] || say "would run: $BIN doctor"
        say "dry run: nothing was changed"
        return 0
    fi

    TMP_DIR=$(mktemp -d 2>/dev/null || mktemp -d -t obs-stack-install) || err "cannot create a temporary folder"
    # The first candidate that downloads, verifies and runs here (glibc build, then the
    # static musl one: an older glibc cannot run the glibc build).
    _new=""
    for _t in $AVAILABLE; do
        select_target "$_t"
        if fetch_verified; then
            break
        fi
        _new=""
    done
    [ -n "$_new" ] || err "no build of obs-stack $VERSION runs on this machine ($PLATFORM)"

    # From here on a failure restores the previous state (see cleanup/rollback).
    HAD_BIN=0
    if [ -f "$BIN" ]; then HAD_BIN=1; fi
    HAD_MANIFEST=0
    if [ -f "$MANIFEST" ]; then HAD_MANIFEST=1; fi
    ARMED=1
    if [ -n "$NEW_DIRS" ]; then
        ensure mkdir -p "$INSTALL_DIR"
    fi
    if [ "$HAD_MANIFEST" = 1 ]; then
        ensure cp -p "$MANIFEST" "$MANIFEST_BACKUP"
    fi
    if [ "$HAD_BIN" = 1 ]; then
        ensure cp -p "$BIN" "$BACKUP"
    fi
    ensure cp "$_new" "$INSTALL_DIR/.obs-stack.new.$$"
    ensure chmod 0755 "$INSTALL_DIR/.obs-stack.new.$$"
    ensure mv -f "$INSTALL_DIR/.obs-stack.new.$$" "$BIN"
    if [ "${OBS_STACK_INSTALL_FAULT:-}" = after-swap ]; then
        err "OBS_STACK_INSTALL_FAULT=after-swap: failing on purpose after the new binary was put in place"
    fi
    make_link obs-detect detect
    make_link obs-inject inject
    write_manifest
    _said=$("$BIN" --version </dev/null 2>&1) || err "the installed $BIN does not run: $_said"
    ARMED=0
    rm -f "$BACKUP" "$MANIFEST_BACKUP"
    say "installed obs-stack $VERSION ($TARGET) in $INSTALL_DIR: obs-stack$LINKS"
}

uninstall() {
    if [ ! -f "$MANIFEST" ]; then
        say "nothing to uninstall: $INSTALL_DIR has no $MANIFEST (obs-stack was not installed there by this script)"
        return 0
    fi
    _want=$(manifest_get binary_sha256)
    if [ -f "$BIN" ]; then
        if [ "$(sha256_of "$BIN")" = "$_want" ]; then
            act rm -f "$BIN"
        else
            warn "leaving $BIN: it changed since install.sh put it there"
        fi
    fi
    for _l in $(manifest_get link); do
        if [ -L "$INSTALL_DIR/$_l" ] && [ "$(readlink "$INSTALL_DIR/$_l")" = obs-stack ]; then
            act rm -f "$INSTALL_DIR/$_l"
        fi
    done
    _dirs=$(manifest_get created_dir)
    act rm -f "$MANIFEST"
    printf '%s\n' "$_dirs" | while IFS= read -r _d; do
        if [ -z "$_d" ]; then
            continue
        elif [ "$DRY_RUN" = 1 ]; then
            say "would remove $_d if empty"
        elif [ -d "$_d" ]; then
            rmdir "$_d" 2>/dev/null || say "kept $_d: it holds other files"
        fi
    done
    if [ "$DRY_RUN" = 1 ]; then
        say "dry run: nothing was changed"
    else
        say "uninstalled obs-stack from $INSTALL_DIR"
    fi
}

path_hint() {
    case ":${PATH:-}:" in
        *":$INSTALL_DIR:"*) ;;
        *)
            say "$INSTALL_DIR is not on your PATH; add it for this shell and future ones:"
            say "  export PATH=\"$INSTALL_DIR:\$PATH\""
            say "  echo 'export PATH=\"$INSTALL_DIR:\$PATH\"' >> ~/.profile   # or ~/.bashrc / ~/.zshrc"
            ;;
    esac
}

# Docker is not ours to install: run doctor, print its verdict, never fail the install on it.
run_doctor() {
    if [ "$NO_DOCTOR" = 1 ]; then
        return 0
    fi
    say "checking this machine: obs-stack doctor"
    _rc=0
    "$BIN" doctor </dev/null || _rc=$?
    case "$_rc" in
        0) say "doctor: ready. Next: in your compose project's folder (its containers running), run: obs-stack up" ;;
        3) say "doctor: obs-stack is installed, but the Docker engine is not reachable (see the fix above). This script does not install Docker: https://docs.docker.com/engine/install/" ;;
        4) say "doctor: obs-stack is installed, but you may not use the Docker socket (see the fix above)" ;;
        1) say "doctor: obs-stack is installed; something it needs is missing (see the fixes above)" ;;
        *) say "doctor: did not complete (exit $_rc); obs-stack is installed, run 'obs-stack doctor' later" ;;
    esac
}

main() {
    # The last argument is the end-of-script marker from the last line: without it the
    # download was cut short, and nothing may run.
    _last=""
    for _a in "$@"; do _last=$_a; done
    if [ "$_last" != "--obs-stack-install-end" ]; then
        printf 'obs-stack-install: error: this script is incomplete (the download was cut short); nothing was done\n' >&2
        exit 1
    fi

    DRY_RUN=0
    UNINSTALL=0
    NO_DOCTOR=${OBS_STACK_NO_DOCTOR:-0}
    VERSION=${OBS_STACK_VERSION:-}
    TMP_DIR=""
    ARMED=0
    HAD_BIN=0
    HAD_MANIFEST=0
    CREATED_LINKS=""
    LINKS=""
    NEW_DIRS=""
    parse_args "$@"
    check_tools

    if [ -z "${OBS_STACK_INSTALL_DIR:-}" ] && [ -z "${HOME:-}" ]; then
        err "HOME is not set; set OBS_STACK_INSTALL_DIR to the folder to install into"
    fi
    INSTALL_DIR=${OBS_STACK_INSTALL_DIR:-$HOME/.local/bin}
    INSTALL_DIR=${INSTALL_DIR%/}
    case "$INSTALL_DIR" in
        /*) ;;
        *) err "OBS_STACK_INSTALL_DIR must be an absolute path (got '$INSTALL_DIR')" ;;
    esac
    BIN="$INSTALL_DIR/obs-stack"
    MANIFEST="$INSTALL_DIR/.obs-stack-install-manifest"
    BACKUP="$INSTALL_DIR/.obs-stack.old.$$"
    MANIFEST_BACKUP="$INSTALL_DIR/.obs-stack-install-manifest.old.$$"
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP

    if [ "$UNINSTALL" = 1 ]; then
        uninstall
        return 0
    fi

    detect_platform
    resolve_base_url
    resolve_version
    list_targets
    _first=${AVAILABLE# }
    select_target "${_first%% *}"
    say "obs-stack $VERSION for $PLATFORM: $ARCHIVE"
    if already_installed; then
        say "obs-stack $VERSION is already installed in $INSTALL_DIR and intact; nothing to do"
        path_hint
        return 0
    fi
    install_release
    [ "$DRY_RUN" = 1 ] && return 0
    path_hint
    run_doctor
}

main "$@" --obs-stack-install-end
