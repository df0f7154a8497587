# Helpers shared by KServ's /init and its tests (/lib/kserv/lib.sh). POSIX sh,
# run by busybox.

# The value of `key=value` on the kernel command line, or nothing.
cmdline_value() {
    for word in $(cat /proc/cmdline); do
        case $word in
            "$1"=*) echo "${word#*=}"; return 0 ;;
        esac
    done
    return 0
}

# Number of CPUs in a sysfs CPU list such as "0-3,6,8-9".
count_cpus() {
    n=0
    for r in $(echo "$1" | tr ',' ' '); do
        case $r in
            *-*) n=$((n + ${r#*-} - ${r%-*} + 1)) ;;
            *) n=$((n + 1)) ;;
        esac
    done
    echo "$n"
}

# Prints the one result line of test $1 and exits.
pass() { echo "KSERV-TEST $KSERV_TEST: PASS $*"; exit 0; }
fail() { echo "KSERV-TEST $KSERV_TEST: FAIL $*"; exit 1; }
# A test that cannot run here (what it needs is absent) passes with a detail
# starting "skipped:" (the console protocol knows only PASS and FAIL; a
# system test that needs the test to run checks for that word).
skip() { echo "KSERV-TEST $KSERV_TEST: PASS skipped: $*"; exit 0; }

# Whether kserv-shim is loaded.
shim_loaded() { grep -q '^kserv_shim ' /proc/modules; }

# Whether the host's GIC is a GICv2 (a GIC-400 or Cortex-A15 GIC in the
# device tree, wherever its node is: under /soc on the Raspberry Pi).
# /proc/device-tree is a symlink: the slash makes find walk it.
host_gicv2() {
    find /proc/device-tree/ -name compatible | xargs cat 2>/dev/null | tr '\0' '\n' |
        grep -qx -e arm,cortex-a15-gic -e arm,gic-400
}

KSERV_DEBUGFS=/sys/kernel/debug/kserv
# The test images' self-test module (kserv_selftest.ko) and its debugfs files.
KSERV_SELFTEST=/sys/kernel/debug/kserv_selftest

# Loads kserv_selftest.ko unless it is loaded (it needs kserv_shim). Returns 0
# when it is loaded; prints why not and returns 1 otherwise.
selftest_load() {
    grep -q '^kserv_selftest ' /proc/modules && return 0
    out=$(insmod /lib/modules/kserv_selftest.ko 2>&1) || {
        echo "insmod kserv_selftest.ko: ${out:-failed}"
        return 1
    }
}

# KCore's self-check (test images: HostSelfCheck, 0xc6000010, through
# kserv_selftest's raw hvc file): its ownership table against every stage-2
# table. Prints "pages: host H, guests G, tables T" and returns 0 when they
# agree; prints the status and returns 1 if not.
self_check() {
    selftest_load || return 1
    echo c6000010 > $KSERV_SELFTEST/hvc 2>/dev/null || { echo "cannot call the self-check"; return 1; }
    set -- $(cat $KSERV_SELFTEST/hvc)
    if [ "$1" != 0 ]; then
        echo "self-check status $1"
        return 1
    fi
    echo "pages: host $((0x$2)), guests $((0x$3)), tables $((0x$4))"
}
