/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * kserv_core.h - the C view of the module's Rust core (kserv-shim/core).
 *
 * Mirrors kserv-shim/core/src/ffi.rs and src/version.rs; keep them in step.
 * The Rust side is built for aarch64-unknown-none-softfloat and linked into
 * this module as core.o (see xtask's module build). Functions that issue
 * hypercalls may be called only after kserv_shim has established that KCore
 * is underneath the kernel: an HVC with nothing at EL2 to take it is fatal.
 */
#ifndef KSERV_CORE_H
#define KSERV_CORE_H

#include <linux/build_bug.h>
#include <linux/types.h>

/* KCore's answer to the version hypercall (Rust: version::KcoreVersion). */
struct kcore_version {
	u16 major;
	u16 minor;
	u32 reserved;
	u64 features;
};
static_assert(sizeof(struct kcore_version) == 16);

/* Results of kserv_core_check_abi (Rust: version::Compat). */
enum kserv_core_compat {
	KSERV_CORE_COMPATIBLE = 0,
	KSERV_CORE_MAJOR_MISMATCH = 1,
	KSERV_CORE_MINOR_TOO_OLD = 2,
};

/* Status of kserv_core_version when KCore's reply is not a version word. */
#define KSERV_CORE_MALFORMED_REPLY (-4095LL)

/* Device-tree names KCore uses (kcore_abi::dt), as C strings. */
const char *kserv_core_dt_hypervisor_compatible(void);
const char *kserv_core_dt_abi_version_prop(void);
const char *kserv_core_dt_reserved_compatible(void);

/*
 * Parses "<id> [a1 .. a6]" (hex, optional 0x) from len bytes at text into
 * regs[0..7] (unused ones zero). 0 on success, -1 if the text is malformed.
 */
int kserv_core_parse_hvc(const char *text, size_t len, u64 regs[8]);

/* The ABI version the shim was built against: major << 16 | minor. */
u32 kserv_core_abi_version(void);

/* Whether KCore's ABI version major.minor works with this shim. */
u32 kserv_core_check_abi(u16 major, u16 minor);

/*
 * Asks KCore for its version: 0 and *out filled, or KCore's negative status
 * (or KSERV_CORE_MALFORMED_REPLY). KCore must be underneath.
 */
s64 kserv_core_version(struct kcore_version *out);

/*
 * Raw hypercall: regs[0] = function id, regs[1..6] = arguments; on return
 * regs[0..7] = x0..x7. KCore must be underneath.
 */
void kserv_core_hvc(u64 regs[8]);

/* Provided by the C glue for the Rust panic handler; never returns. */
void __noreturn kserv_core_panic(const char *file, size_t file_len, u32 line);

#endif /* KSERV_CORE_H */
