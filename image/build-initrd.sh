#!/bin/sh
# Build the default guest initramfs from Debian's busybox-static: a shell,
# coreutils-style applets and busybox init. Cached like the kernel.
#   usage: image/build-initrd.sh            (prints the image directory)
set -eu
umask 022 # the modes below are set explicitly; nothing inherits a stricter umask
here=$(cd "$(dirname "$0")" && pwd)
cache=${PROVIUM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/provium}
bb=/bin/busybox
[ -x "$bb" ] || { echo "build-initrd: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
version=$(dpkg-query -W -f='${Version}' busybox-static)
# The key covers this script, busybox's version and the rootfs files' names
# and contents: changing any of them builds a new image.
key=$( (echo "$version"; cat "$here/build-initrd.sh"; cd "$here/rootfs" && find . -type f | LC_ALL=C sort |
       while read -r f; do echo "$f"; cat "$f"; done) | sha256sum | cut -c1-16)
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
# Modes do not depend on the checkout or on mktemp: the root directory
# ("." in the archive; mktemp made it 0700) and every directory is 0755,
# files 0644, scripts 0755, /tmp 1777, /root 0700.
find "$stage" -type d -exec chmod 755 {} +
find "$stage" -type f -exec chmod 644 {} +
chmod 755 "$stage/bin/busybox" "$stage/etc/init.d/rcS" "$stage/etc/acpi/PWRF/00000080"
chmod 1777 "$stage/tmp"
chmod 700 "$stage/root"
mkdir -p "$out"
# Everything belongs to root except user's home (uid/gid 1000): a second
# archive appended to the first (the kernel unpacks concatenated archives),
# so no chown and no root privileges are needed here.
(cd "$stage" && find . ! -path ./home/user | LC_ALL=C sort | cpio --quiet -o -H newc --owner=0:0 &&
   echo ./home/user | cpio --quiet -o -H newc --owner=1000:1000) > "$out/initrd.cpio.tmp"
mv "$out/initrd.cpio.tmp" "$out/initrd.cpio"
echo "$out"
