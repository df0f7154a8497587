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

/*
 * The VM isolation self-test (Rust: vm_selftest, ffi::VmstArgs). The glue
 * allocates the pages, the core runs the scenario over them through the
 * kserv_glue_vmst_* callbacks below.
 */
#define KSERV_VMST_POOL_PAGES 4		/* table pages per VM, contiguous, aligned */
#define KSERV_VMST_MEM_PAGES 4		/* memory pages of the first VM */
#define KSERV_VMST_MAX_IMAGE_PAGES 16
#define KSERV_VMST_MAX_IMAGE_LEN (KSERV_VMST_MAX_IMAGE_PAGES * 4096)
/* The image's signature block: the 64-byte signature, then the signed MMIO
 * manifest (at most KC_MANIFEST_MAX_BLOCK_LEN bytes in all; zero-padded). */
#define KSERV_VMST_SIG_LEN KC_MANIFEST_MAX_BLOCK_LEN
#define KSERV_SIG_BLOCK_MIN (KC_MANIFEST_SIGNATURE_LEN + KC_MANIFEST_HEADER_LEN)

/* Results of kserv_glue_vmst_probe (Rust: vm_selftest::Probe). */
#define KSERV_VMST_COMPLETED 0
#define KSERV_VMST_FAULTED 1
#define KSERV_VMST_HUNG 2

/* One VM's pages (Rust: ffi::VmstVm). */
struct kserv_vmst_vm {
	u64 pool_pfn;		/* first of KSERV_VMST_POOL_PAGES, aligned to that many */
	u64 extra_pool_pfn;	/* one more table page (HostDonateVmPool) */
	u64 image_pfns[KSERV_VMST_MAX_IMAGE_PAGES];	/* ceil(image_len / 4096) used */
};
static_assert(sizeof(struct kserv_vmst_vm) == 8 * (2 + KSERV_VMST_MAX_IMAGE_PAGES));

/* The self-test's inputs (Rust: ffi::VmstArgs). */
struct kserv_vmst_args {
	void *ctx;		/* passed back to every kserv_glue_vmst_* call */
	u64 pool_pages;		/* KSERV_VMST_POOL_PAGES */
	const u8 *image;
	u64 image_len;		/* 1 .. KSERV_VMST_MAX_IMAGE_LEN */
	const u8 *sig;		/* KSERV_VMST_SIG_LEN bytes, zero-padded */
	struct kserv_vmst_vm vm[2];	/* the good VM, the tampered one */
	u64 mem_pfns[KSERV_VMST_MEM_PAGES];
	u64 sig_pfn;
};
static_assert(sizeof(struct kserv_vmst_args) ==
	      8 * 5 + 2 * sizeof(struct kserv_vmst_vm) + 8 * KSERV_VMST_MEM_PAGES + 8);

/* sizeof(struct kserv_vmst_args) as the core was built. */
size_t kserv_core_vmst_args_size(void);

/*
 * Runs the self-test: logs one line per step through kserv_glue_vmst_log and
 * returns the number of failed steps (0: all passed). Every page is either
 * handed to kserv_glue_vmst_release (KServ's again) or must be kept forever:
 * KCore may still own it. KCore must be underneath.
 */
u32 kserv_core_vm_selftest(const struct kserv_vmst_args *args);

/* Provided by the C glue for kserv_core_vm_selftest; ctx is args->ctx. */
void kserv_glue_vmst_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len);
void kserv_glue_vmst_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len);
/*
 * Accesses pfn from a new kthread: KSERV_VMST_* (a read's value in *value) or
 * a negative errno. expect_fault only changes what is logged.
 */
s64 kserv_glue_vmst_probe(void *ctx, u64 pfn, u32 write, u32 expect_fault, u64 *value);
void kserv_glue_vmst_release(void *ctx, u64 pfn);
void kserv_glue_vmst_log(void *ctx, const char *line, u32 len);

/*
 * Running kcore-test-guest in a protected VM (Rust: guest_run, ffi::GrArgs).
 * The core sets up the VM and drives the run; the glue provides pages,
 * threads, sleeping and time through the kserv_glue_gr_* callbacks below.
 */
#define KSERV_GR_VCPUS 2		/* guest_run::VCPUS */
#define KSERV_GR_MAX_IMAGE_LEN (16 * 4096)	/* guest_run::MAX_IMAGE_LEN */
#define KSERV_GR_SIG_LEN KC_MANIFEST_MAX_BLOCK_LEN	/* a zero-padded signature block */

/* Results of kserv_core_guest_run (Rust: ffi::gr_result). */
#define KSERV_GR_PASS 0
#define KSERV_GR_FAIL 1
#define KSERV_GR_STUCK 2	/* a vCPU thread never came back: leak ctx and state */

/* The run's inputs (Rust: ffi::GrArgs). */
struct kserv_gr_args {
	void *ctx;		/* passed back to the kserv_glue_gr_* calls */
	void *state;		/* kserv_core_gr_state_size() bytes, zeroed, 8-aligned */
	u64 state_size;
	const u8 *image;
	u64 image_len;		/* 1 .. KSERV_GR_MAX_IMAGE_LEN */
	const u8 *sig;		/* KSERV_GR_SIG_LEN bytes, zero-padded */
	u64 timeout_secs;	/* wall-clock limit; 0: the core's default (60 s) */
};
static_assert(sizeof(struct kserv_gr_args) == 7 * 8);

/* sizeof(struct kserv_gr_args) as the core was built. */
size_t kserv_core_gr_args_size(void);
/* Bytes of the threads' shared state the glue allocates, zeroed. */
size_t kserv_core_gr_state_size(void);
/* Number of vCPUs the core runs (must be KSERV_GR_VCPUS). */
u32 kserv_core_gr_vcpus(void);

/*
 * Runs the guest: logs through kserv_glue_gr_log and returns KSERV_GR_*.
 * Every page it allocated is freed through kserv_glue_gr_free or must be
 * kept forever (KCore may still own it). KCore must be underneath.
 */
u32 kserv_core_guest_run(const struct kserv_gr_args *args);
/* The body of vCPU idx's kthread, started by kserv_glue_gr_start. */
void kserv_core_guest_vcpu(const struct kserv_gr_args *args, u32 idx);

/* Provided by the C glue for kserv_core_guest_run; ctx is args->ctx. */
u64 kserv_glue_gr_alloc(void *ctx, u32 order);	/* first pfn, or 0 */
void kserv_glue_gr_free(void *ctx, u64 pfn);
void kserv_glue_gr_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len);
void kserv_glue_gr_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len);
void kserv_glue_gr_log(void *ctx, const char *line, u32 len);
u64 kserv_glue_gr_now(void);		/* CNTPCT_EL0 */
u64 kserv_glue_gr_frequency(void);	/* CNTFRQ_EL0 */
u32 kserv_glue_gr_cpu(void);
void kserv_glue_gr_relax(void);
s64 kserv_glue_gr_start(void *ctx, u32 idx);	/* 0 or a negative errno */
u32 kserv_glue_gr_join(void *ctx, u32 idx, u64 deadline);	/* 1: finished */
void kserv_glue_gr_wait(void *ctx, u32 idx, u64 deadline);
void kserv_glue_gr_wake(void *ctx, u32 idx);

/*
 * /dev/kvm (Rust: kvm, kvm::ffi). The glue registers the misc device, makes
 * the VM, vCPU and device fds and allocates the core's objects (zeroed);
 * the core decides everything and calls back kserv_glue_kvm_* (and the
 * kserv_glue_gr_* page, time and CPU helpers) with the glue's per-call
 * context.
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
};
static_assert(sizeof(struct kserv_kvm_host) == 16);

/* Number of values kserv_core_kvm_check_uapi compares (kvm::uapi::CHECKED). */
#define KSERV_KVM_CHECKED 33

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
void kserv_core_kvm_vcpu_destroy(void *ctx, void *vcpu);
u64 kserv_core_kvm_vm_destroy(void *ctx, void *vm, u64 *kept);
/* An irqfd's work item: its eventfd was signalled (ctx: the VM's, no vCPU). */
void kserv_core_kvm_irqfd_inject(void *ctx, void *vm, u32 gsi, u32 resample);

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
void kserv_glue_kvm_wait(void *ctx, u64 deadline);
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

/* kserv_kvm.c: /dev/kvm's registration. */
int kserv_kvm_init(void);
void kserv_kvm_exit(void);

/* Provided by the C glue for the Rust panic handler; never returns. */
void __noreturn kserv_core_panic(const char *file, size_t file_len, u32 line);

#endif /* KSERV_CORE_H */
