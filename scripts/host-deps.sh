#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, once.
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# QEMU 10 (raspi4b, virt with virtualization=on, icount) lives in bookworm-backports.
qemu_ok() {
    command -v qemu-system-aarch64 >/dev/null 2>&1 || return 1
    local v
    v=$(qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -n1)
    [ "${v:-0}" -ge 10 ]
}

# The archive the machine already uses for bookworm, into $uri: the URIs of the first
# deb822 entry whose Suites include bookworm, else of the first one-line `deb` entry.
archive_uri() {
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'BEGIN { RS = "" }
        { u = ""; s = 0; n = split($0, l, "\n")
          for (i = 1; i <= n; i++) {
              if (l[i] ~ /^URIs:/) { split(l[i], w, " "); u = w[2] }
              if (l[i] ~ /^Suites:/) { m = split(l[i], w, " "); for (j = 2; j <= m; j++) if (w[j] == "bookworm") s = 1 }
          }
          if (s && u != "") { print u; exit } }')
    if [ -z "$uri" ]; then
        uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | head -n1)
    fi
    [ -n "$uri" ] || { echo "host-deps: cannot find the Debian archive URI" >&2; exit 1; }
}

src=/etc/apt/sources.list.d/kcore-backports.sources
if ! qemu_ok && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    archive_uri
    sudo_ tee "$src" >/dev/null <<EOS
Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
fi

# The Raspberry Pi firmware (`raspi-firmware`, for build/rpi4-sd.img) is in bookworm's
# non-free-firmware component: one more entry on the same archive.
fw_src=/etc/apt/sources.list.d/kcore-non-free-firmware.sources
fw_added=0
if ! grep -rqsE '^Components:.*non-free-firmware|^deb .* bookworm .*non-free-firmware' \
        /etc/apt/sources.list /etc/apt/sources.list.d/; then
    archive_uri
    sudo_ tee "$fw_src" >/dev/null <<EOS
Types: deb
URIs: $uri
Suites: bookworm
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
    fw_added=1
fi

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    sudo_ dpkg --add-architecture arm64
fi

# gcc and libc6-dev-arm64-cross: the kernel's `make headers` and the static KVM
# selftests. kmod: modinfo (the build checks the module's vermagic); gzip: a compressed
# vmlinuz, should Debian ship one. mtools: the FAT partition of build/rpi4-sd.img
# (mformat, mcopy) and the test that reads it back (mdir, mtype). qemu-efi-aarch64:
# EDK2 for QEMU virt (/usr/share/qemu-efi-aarch64/QEMU_EFI.fd), which boots build/kcore.efi.
for p in gcc gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu linux-kbuild-6.1 cpio make bc flex bison libelf-dev xz-utils device-tree-compiler kmod gzip mtools qemu-efi-aarch64; do
    have "$p" || need+=("$p")
done

stamp=/var/lib/apt/periodic/kcore-update-stamp
if ! qemu_ok || [ ${#need[@]} -gt 0 ] || [ ! -e "$stamp" ] || [ "$fw_added" -eq 1 ]; then
    sudo_ apt-get update -q
    sudo_ mkdir -p "$(dirname "$stamp")"; sudo_ touch "$stamp"
fi
if ! qemu_ok; then
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports qemu-system-arm
fi
if [ ${#need[@]} -gt 0 ]; then
    sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
qemu_ok || { echo "host-deps: qemu-system-aarch64 >= 10 is not available" >&2; exit 1; }
