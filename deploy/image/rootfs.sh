#!/bin/sh
# Lays out the images' whole filesystem in OUT: the three binaries, exactly the shared
# libraries they link (glibc, libm, libgcc_s: rustls needs no OpenSSL and SQLite is
# compiled in), a passwd entry for the unprivileged user 65532, and the folders the
# Helm charts mount. The Dockerfile's runtime stages are `FROM scratch` plus this
# folder, so the same script builds what scripts/check-image runs without a container
# engine.
# Usage: rootfs.sh <folder with the binaries> <out>
set -eu
BIN="$1"
OUT="$2"
mkdir -p "$OUT/usr/local/bin" "$OUT/etc" "$OUT/tmp"
for binary in tongban tongban-gateway tongban-node; do
    install -m 0755 "$BIN/$binary" "$OUT/usr/local/bin/$binary"
    # Each library at the path the dynamic loader will look for it.
    ldd "$BIN/$binary" | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
        mkdir -p "$OUT$(dirname "$lib")"
        cp -L "$lib" "$OUT$lib"
    done
done
# The unprivileged user the charts run as (runAsUser 65532), named for tools that ask.
echo "root:x:0:0:root:/root:/sbin/nologin" > "$OUT/etc/passwd"
echo "tongban:x:65532:65532:tongban:/var/lib/tongban:/sbin/nologin" >> "$OUT/etc/passwd"
printf 'root:x:0:\ntongban:x:65532:\n' > "$OUT/etc/group"
# Mount points of the charts' volumes; the state and trails belong to the user.
mkdir -p "$OUT/etc/tongban" "$OUT/var/lib/tongban/state" "$OUT/var/lib/tongban/audit"
# (Only root can give them away; the test suite, not root, then runs the binaries outside.)
if [ "$(id -u)" = 0 ]; then chown -R 65532:65532 "$OUT/var/lib/tongban"; fi
chmod 1777 "$OUT/tmp"
