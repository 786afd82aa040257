#!/bin/sh
# Build the default guest initramfs from Debian's busybox-static: a shell,
# coreutils-style applets and busybox init. Cached like the kernel.
#   usage: image/build-initrd.sh            (prints the image directory)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=${PROVIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provium}
bb=/bin/busybox
[ -x "$bb" ] || { echo "build-initrd: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
version=$(dpkg-query -W -f='${Version}' busybox-static)
key=$( (echo "$version"; cat "$here/build-initrd.sh"; find "$here/rootfs" -type f | LC_ALL=C sort | xargs cat) | sha256sum | cut -c1-16)
out="$cache/images/initrd-$key"
if [ -f "$out/initrd.cpio" ]; then echo "$out"; exit 0; fi
mkdir -p "$cache/images"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/bin "$stage"/sbin "$stage"/usr/bin "$stage"/usr/sbin "$stage"/etc/init.d \
         "$stage"/proc "$stage"/sys "$stage"/dev "$stage"/tmp "$stage"/run "$stage"/root "$stage"/mnt \
         "$stage"/home/user "$stage"/var/log
cp "$bb" "$stage/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] && continue
  mkdir -p "$stage/$(dirname "$applet")"
  ln -sf /bin/busybox "$stage/$applet"
done
cp -R "$here/rootfs/etc/." "$stage/etc/"
chmod 755 "$stage/etc/init.d/rcS" "$stage/etc/acpi/PWRF/00000080"
chmod 1777 "$stage/tmp"
chown 1000:1000 "$stage/home/user"
mkdir -p "$out"
(cd "$stage" && find . | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 > "$out/initrd.cpio.tmp")
mv "$out/initrd.cpio.tmp" "$out/initrd.cpio"
echo "$out"
