#!/usr/bin/env python3
"""Writes a one-layer OCI image archive around Debian's static busybox, for the testbed's containerd (there is no
registry to pull from here). Usage: testbox-image.py OUT.tar NAME:TAG. The same busybox gives the same bytes."""
import hashlib
import io
import json
import sys
import tarfile

out, name = sys.argv[1], sys.argv[2]


def add(archive, path, data=b"", mode=0o644, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(path)
    info.mtime, info.mode, info.type, info.linkname = 0, mode, kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


layer_bytes = io.BytesIO()
with tarfile.open(fileobj=layer_bytes, mode="w") as layer:
    for directory in ["bin", "dev", "etc", "proc", "sys", "tmp"]:
        add(layer, directory, mode=0o1777 if directory == "tmp" else 0o755, kind=tarfile.DIRTYPE)
    with open("/usr/bin/busybox", "rb") as busybox:
        add(layer, "bin/busybox", busybox.read(), mode=0o755)
    for applet in ["sh", "sleep", "cat", "cp", "true", "ls", "echo"]:
        add(layer, "bin/" + applet, kind=tarfile.SYMTYPE, link="busybox")
layer = layer_bytes.getvalue()


def digest(data):
    return hashlib.sha256(data).hexdigest()


config = json.dumps({
    "architecture": "amd64", "os": "linux",
    # Also the pod sandbox ("pause") image: its process only has to stay alive.
    "config": {"Cmd": ["/bin/sleep", "2147483647"], "Env": ["PATH=/bin"]},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + digest(layer)]},
}, sort_keys=True).encode()
manifest = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + digest(config),
               "size": len(config)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + digest(layer),
                "size": len(layer)}],
}, sort_keys=True).encode()
index = json.dumps({"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + digest(manifest),
    "size": len(manifest),
    "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
}]}, sort_keys=True).encode()
with tarfile.open(out, "w") as archive:
    add(archive, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    add(archive, "index.json", index)
    for blob in [layer, config, manifest]:
        add(archive, "blobs/sha256/" + digest(blob), blob)
