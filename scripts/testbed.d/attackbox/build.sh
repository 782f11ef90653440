#!/usr/bin/env bash
# The image the cluster tier's attacks run in (docker.io/palisade/attackbox:1): Debian's static busybox with every
# applet linked, a static musl tool (readfile, a `cat` that opens with open(2) as Alpine's tools do), and the
# account files an image has (/etc/passwd, /etc/shadow with a locked root). Built with buildah from scratch and
# imported into the containerd given. Usage: build.sh CONTAINERD_SOCKET
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
socket=$1
name=docker.io/palisade/attackbox:1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for package in busybox-static musl-tools buildah; do
  dpkg -s "$package" >/dev/null 2>&1 || missing="${missing:-} $package"
done
if [ -n "${missing:-}" ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
musl-gcc -static -Os -o "$work/readfile" "$here/readfile.c"
mkdir -p "$work/root/bin" "$work/root/etc" "$work/root/tmp" "$work/root/root" "$work/root/usr/local/bin"
chmod 1777 "$work/root/tmp"; chmod 700 "$work/root/root"
cp /usr/bin/busybox "$work/root/bin/busybox"
# Every applet as a symlink, as Alpine's /bin is (busybox --install needs /proc; this needs nothing).
for applet in $(/usr/bin/busybox --list); do [ "$applet" = busybox ] || ln -s busybox "$work/root/bin/$applet"; done
cp "$work/readfile" "$work/root/usr/local/bin/readfile"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$work/root/etc/passwd"
printf 'root:x:0:\nshadow:x:42:\nnogroup:x:65534:\n' > "$work/root/etc/group"
printf 'root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' > "$work/root/etc/shadow"
chmod 640 "$work/root/etc/shadow"
container=$(buildah from scratch)
mount=$(buildah mount "$container")
tar -C "$work/root" -cf - . | tar -C "$mount" -xpf -
buildah umount "$container" >/dev/null
buildah config --cmd '["/bin/sleep","2147483647"]' --env PATH=/usr/local/bin:/bin "$container"
buildah commit -q --rm "$container" "$name" >/dev/null
buildah push -q "$name" "docker-archive:$work/attackbox.tar:$name" >/dev/null
ctr --address "$socket" -n k8s.io images import "$work/attackbox.tar" >/dev/null
echo "$name"
