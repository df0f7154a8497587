/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * kserv_core.h - the C view of the module's Rust core (kserv-shim/core).
 *
 * Mirrors kserv-shim/core/src/ffi.rs and kserv-shim/base/src/version.rs;
 * keep them in step.
 * The Rust side is built for aarch64-unknown-none-softfloat and linked into
 * this module as core.o (see xtask's module build). Functions that issue
 * hypercalls may be called only after kserv_shim has established that KCore
 * is underneath the kernel: an HVC with nothing at EL2 to take it is fatal.
 */
#ifndef KSERV_CORE_H
#define KSERV_CORE_H

#include <linux/build_bug.h>
#include <linux/types.h>

#include "kcore_abi.h"	/* generated from kcore-abi by the build */

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
/* /chosen/kcore,abi-version of a flattened tree (ACPI machines), or -1. */
s64 kserv_core_fdt_chosen_abi(const u8 *fdt, size_t len);

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
 * /dev/kvm (Rust: kvm, kvm::ffi). The glue registers the misc device, makes
 * the VM, vCPU and device fds and allocates the core's objects (zeroed);
 * the core decides everything and calls back kserv_glue_kvm_* with the
 * glue's per-call context.
 */
struct kserv_kvm_sizes {
	u64 vm;			/* bytes of a VM's core state */
	u64 vcpu;		/* bytes of a vCPU's core state */
	u64 max_vcpus;
};
static_assert(sizeof(struct kserv_kvm_sizes) == 24);

struct kserv_kvm_host {
	u32 ipa_limit;		/* IPA bits a VM may have */
	u32 online_cpus;
	u64 midr;
	u64 user_limit;		/* TASK_SIZE_MAX: where access_ok's user addresses end */
	u64 dfr0;		/* ID_AA64DFR0_EL1, sanitised: breakpoints, watchpoints */
	u64 pfr0;		/* ID_AA64PFR0_EL1, sanitised: RAS */
};
static_assert(sizeof(struct kserv_kvm_host) == 40);

/* Number of values kserv_core_kvm_check_uapi compares (kvm::uapi::CHECKED). */
#define KSERV_KVM_CHECKED 46

void kserv_core_kvm_sizes(struct kserv_kvm_sizes *out);
u32 kserv_core_kvm_check_uapi(const u64 *values, u32 n);	/* 0: all agree */
s64 kserv_core_kvm_dev_ioctl(const struct kserv_kvm_host *host, u32 cmd, u64 arg);
s64 kserv_core_kvm_vm_init(void *ctx, const struct kserv_kvm_host *host, void *vm, u64 type);
s64 kserv_core_kvm_vm_ioctl(void *ctx, const struct kserv_kvm_host *host, void *vm, u32 cmd,
			    u64 arg);
s64 kserv_core_kvm_vcpu_reserve(void *ctx, void *vm, u64 id);
s64 kserv_core_kvm_vcpu_create(void *ctx, void *vm, void *vcpu, u64 id);
void kserv_core_kvm_vcpu_unreserve(void *ctx, void *vm, u64 id);
s64 kserv_core_kvm_vcpu_ioctl(void *ctx, const struct kserv_kvm_host *host, void *vm,
			      void *vcpu, u32 cmd, u64 arg);
s64 kserv_core_kvm_device_create(void *ctx, void *vm, u32 type, u32 flags);
s64 kserv_core_kvm_device_ioctl(void *ctx, void *vm, u32 cmd, u64 arg);
s64 kserv_core_kvm_its_ioctl(void *ctx, void *vm, u32 cmd, u64 arg);
void kserv_core_kvm_vcpu_destroy(void *ctx, void *vcpu);
u64 kserv_core_kvm_vm_destroy(void *ctx, void *vm, u64 *kept);
/* An irqfd's work item: its eventfd was signalled (ctx: the VM's, no vCPU). */
void kserv_core_kvm_irqfd_inject(void *ctx, void *vm, u32 gsi, u32 resample);
/* read(2) of a KVM_GET_STATS_FD fd of the VM (vcpu < 0) or a vCPU: bytes or -errno. */
s64 kserv_core_kvm_stats_read(void *ctx, void *vm, u32 pid, s32 vcpu, s64 offset, u64 uaddr,
			      u64 len);

/* Provided by the glue (kserv_kvm.c) for the KVM core. Errors are positive errnos. */
s32 kserv_glue_kvm_copy_from_user(void *ctx, u64 uaddr, u8 *buf, u32 len);
s32 kserv_glue_kvm_copy_to_user(void *ctx, u64 uaddr, const u8 *data, u32 len);
s32 kserv_glue_kvm_pin(void *ctx, u64 uaddr, u32 write, u64 *pfn);
void kserv_glue_kvm_unpin(u64 pfn);
u64 kserv_glue_kvm_alloc_array(u64 words);
void kserv_glue_kvm_free_array(u64 addr);
void kserv_glue_kvm_run_read(void *ctx, u32 offset, u8 *buf, u32 len);
void kserv_glue_kvm_run_write(void *ctx, u32 offset, const u8 *data, u32 len);
void kserv_glue_kvm_lock(void *ctx, u32 which);		/* 0: the VM's mutex, 1: its GIC spinlock */
void kserv_glue_kvm_unlock(void *ctx, u32 which);
u32 kserv_glue_kvm_signal_pending(void);
void kserv_glue_kvm_wait(void *ctx, u64 deadline, u64 max_poll_ns);	/* U64_MAX: halt_poll_ns */
void kserv_glue_kvm_kick(void *ctx, u32 id);
void kserv_glue_kvm_enter_guest(void *ctx);
void kserv_glue_kvm_leave_guest(void *ctx);
void kserv_glue_kvm_log(const char *line, u32 len);
s32 kserv_glue_kvm_eventfd_get(s32 fd, u64 *eventfd);	/* a reference: EBADF, EINVAL */
void kserv_glue_kvm_eventfd_put(u64 eventfd);
void kserv_glue_kvm_eventfd_signal(u64 eventfd);
s32 kserv_glue_kvm_irqfd_attach(void *ctx, s32 fd, u64 eventfd, u32 gsi, u32 resample,
				u64 *hook);
void kserv_glue_kvm_irqfd_detach(u64 hook);
u64 kserv_glue_kvm_alloc_pages(void *ctx, u32 order);	/* first pfn, or 0 */
void kserv_glue_kvm_free_page(void *ctx, u64 pfn);
void kserv_glue_kvm_page_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len);
void kserv_glue_kvm_page_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len);
u64 kserv_glue_kvm_now(void);		/* CNTPCT_EL0 */
u32 kserv_glue_kvm_cpu(void);
void kserv_glue_kvm_relax(void);
void kserv_glue_kvm_fence(void);	/* smp_mb() */
u64 kserv_glue_kvm_random(void);
/* The wall clock (ns) and CNTPCT_EL0 at one instant; 0 if the clock source is not the counter. */
u32 kserv_glue_kvm_ptp(u64 *real, u64 *cycles);
u64 kserv_glue_kvm_run_delay(void);	/* current's run-queue wait so far, ns */
u32 kserv_glue_kvm_ccsidr(u32 csselr);	/* this CPU's CCSIDR_EL1 of that cache */

/* kserv_kvm.c: /dev/kvm's registration. */
int kserv_kvm_init(void);
void kserv_kvm_exit(void);

/* Provided by the C glue for the Rust panic handler (kserv-base); never returns. */
void __noreturn kserv_core_panic(const char *file, size_t file_len, u32 line);

#endif /* KSERV_CORE_H */
