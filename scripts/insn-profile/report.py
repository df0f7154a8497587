#!/usr/bin/env python3
"""Where one benchmark iteration's instructions go: reads an insn_profile
window (see README.md) and prints instructions per iteration by place.

  report.py WINDOW_FILE ITERATIONS [--kcore ELF] [--kcore-base ADDR]
            [--console KSERV_CONSOLE_LOG] [--top N]

Places: KCore's functions (from its ELF, linked at 0 and loaded at
--kcore-base), the shim module's functions (from the `KSERV-SYM` lines the
kvmbench test prints from /proc/kallsyms), KServ's kernel as one bucket
(Debian ships no symbols for it), and everything else (the guest, the VMM,
and on stock KVM its EL2 code) by 4 KiB page.
"""
import argparse
import bisect
import collections
import subprocess
import sys

KERNEL_TEXT = 0xFFFF800008000000
MODULES = 0xFFFF800000000000


def elf_symbols(path, base):
    out = subprocess.run(["nm", "-n", "-C", path], capture_output=True, text=True, check=True)
    syms = []
    for line in out.stdout.splitlines():
        f = line.split(None, 2)
        if len(f) == 3 and f[1] in "tTwW" and not f[2].startswith("$"):
            syms.append((int(f[0], 16) + base, f[2]))
    syms.sort()
    return syms


def image_size(path):
    """KCore's footprint: its `__kcore_end` symbol (the image is linked at 0)."""
    out = subprocess.run(["nm", path], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == "__kcore_end":
            return int(f[0], 16)
    return 0


def module_symbols(console):
    syms = []
    with open(console, errors="replace") as f:
        for line in f:
            f_ = line.split()
            if len(f_) >= 4 and f_[0] == "KSERV-SYM" and f_[2] in "tT" and not f_[3].startswith("$"):
                syms.append((int(f_[1], 16), f_[3]))
    syms.sort()
    return syms


def lookup(syms, addr):
    i = bisect.bisect_right(syms, (addr, "\uffff")) - 1
    return syms[i][1] if i >= 0 else "?"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("window")
    p.add_argument("iterations", type=int)
    p.add_argument("--kcore", help="KCore's ELF")
    p.add_argument("--kcore-base", type=lambda s: int(s, 0), default=0x40200000)
    p.add_argument("--console", help="KServ's console log with KSERV-SYM lines")
    p.add_argument("--top", type=int, default=25)
    a = p.parse_args()

    kcore = elf_symbols(a.kcore, a.kcore_base) if a.kcore else []
    kcore_end = a.kcore_base + image_size(a.kcore) if a.kcore else a.kcore_base
    module = module_symbols(a.console) if a.console else []

    def place(addr):
        if kcore and a.kcore_base <= addr < kcore_end:
            return "KCore", lookup(kcore, addr)
        if addr >= KERNEL_TEXT:
            return "kernel", "KServ's kernel"
        if addr >= MODULES:
            return "module", lookup(module, addr) if module else "module code"
        return "other", "page %#x" % (addr & ~0xFFF)

    by_place = collections.Counter()
    by_part = collections.Counter()
    with open(a.window) as f:
        for line in f:
            v, _haddr, n, count = line.split()
            insns = int(n) * int(count)
            part, name = place(int(v, 16))
            by_place[(part, name)] += insns
            by_part[part] += insns
    total = sum(by_part.values())
    it = max(a.iterations, 1)
    print("%.0f instructions per iteration: %s" % (
        total / it, ", ".join("%s %.0f" % (k, v / it) for k, v in by_part.most_common())))
    for (part, name), v in by_place.most_common(a.top):
        print("%9.0f  %-6s %s" % (v / it, part, name[:100]))


if __name__ == "__main__":
    sys.exit(main())
