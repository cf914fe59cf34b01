#!/usr/bin/env bash
# A minimal Debian with python3 and venv, in buildah's local storage under a fixed name, so the
# action image can be built where no image registry is reachable:
#
#   scripts/base-image.sh                      # makes localhost/runkeys-base:<codename>
#   buildah bud --isolation chroot --build-arg BASE_IMAGE=localhost/runkeys-base:<codename> .
#
# Debian release and apt mirror are this machine's own (read from /etc/os-release and its apt
# sources at run time), so no mirror is written down here; so are its locally added certificate
# authorities. Needs root, buildah and debootstrap.
set -euo pipefail

codename="$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")"
name="${1:-localhost/runkeys-base:${codename}}"

if buildah inspect --type image "$name" >/dev/null 2>&1; then
    echo "base image $name already exists"
    exit 0
fi

# The first Debian archive URI this machine's apt uses for the release itself (not -security or
# -updates), from one-line sources.list entries or deb822 .sources stanzas.
mirror="$(
    {
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v s="$codename" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i+1) == s) print $i; break } }'
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -e "$f" ] || continue
            awk -v s="$codename" '
                BEGIN { RS = ""; FS = "\n" }
                {
                    uris = ""; suites = ""; types = ""
                    for (i = 1; i <= NF; i++) {
                        if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
                        if ($i ~ /^Suites:/) { suites = " " $i " "; sub(/^ Suites:/, "", suites) }
                        if ($i ~ /^Types:/) { types = $i }
                    }
                    if (types ~ /deb( |$)/ && suites ~ (" " s " ")) { split(uris, u, /[ \t]+/); print u[1] }
                }' "$f"
        done
    } | head -n 1
)"
if [ -z "$mirror" ]; then
    echo "no apt source for $codename found in /etc/apt; cannot choose a mirror" >&2
    exit 1
fi

root="$(mktemp -d)"
container=""
cleanup() {
    [ -n "$container" ] && buildah rm "$container" >/dev/null 2>&1 || true
    rm -rf "$root"
}
trap cleanup EXIT

echo "debootstrapping $codename (python3, venv) into $root"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$codename" "$root" "$mirror" >/dev/null
# Trust what this machine trusts: certificate authorities added locally (a proxy's, say) would
# otherwise make every HTTPS download of the image build fail.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$root"/usr/local/share/ca-certificates/
    chroot "$root" update-ca-certificates >/dev/null
fi
# Nothing of the build host's apt state or caches in the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/tmp/*

container="$(buildah from scratch)"
mountpoint="$(buildah mount "$container")"
cp -a "$root"/. "$mountpoint"/
buildah umount "$container" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    --cmd /usr/bin/python3 "$container"
buildah commit --quiet "$container" "$name" >/dev/null
echo "base image $name ready"
