#!/bin/sh
# A $KCORE_QEMU that loads insn_profile into every -icount QEMU: windows go
# to $INSN_PROFILE_DIR/<kcore|kvm>-<pid>.<window>.
here=$(cd "$(dirname "$0")" && pwd)
dir=${INSN_PROFILE_DIR:-/tmp/insn-profile}
side=kvm
case "$*" in *kcore.img*) side=kcore ;; esac
case "$*" in
*-icount*)
    mkdir -p "$dir"
    exec qemu-system-aarch64 -plugin "$here/insn_profile.so,out=$dir/$side-$$" "$@"
    ;;
esac
exec qemu-system-aarch64 "$@"
