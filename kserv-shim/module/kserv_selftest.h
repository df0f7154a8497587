/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/*
 * kserv_selftest.h - the C view of kserv_selftest.ko's Rust core
 * (kserv-shim/selftest).
 *
 * Mirrors kserv-shim/selftest/src/ffi.rs; keep them in step. The Rust side
 * is built for aarch64-unknown-none-softfloat and linked into the module as
 * selftest.o (see xtask's module build). Its hypercalls are safe because
 * the module needs kserv_shim.ko's symbols and so loads only after
 * kserv_shim has established that KCore is underneath the kernel.
 */
#ifndef KSERV_SELFTEST_H
#define KSERV_SELFTEST_H

#include <linux/build_bug.h>
#include <linux/types.h>

#include "kcore_abi.h"	/* generated from kcore-abi by the build */

/*
 * Parses "<id> [a1 .. a6]" (hex, optional 0x) from len bytes at text into
 * regs[0..7] (unused ones zero). 0 on success, -1 if the text is malformed.
 */
int kserv_selftest_parse_hvc(const char *text, size_t len, u64 regs[8]);

/*
 * Raw hypercall: regs[0] = function id, regs[1..6] = arguments; on return
 * regs[0..7] = x0..x7. KCore must be underneath.
 */
void kserv_selftest_hvc(u64 regs[8]);

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
size_t kserv_selftest_vmst_args_size(void);

/*
 * Runs the self-test: logs one line per step through kserv_glue_vmst_log and
 * returns the number of failed steps (0: all passed). Every page is either
 * handed to kserv_glue_vmst_release (KServ's again) or must be kept forever:
 * KCore may still own it. KCore must be underneath.
 */
u32 kserv_selftest_vm_selftest(const struct kserv_vmst_args *args);

/* Provided by the C glue for kserv_selftest_vm_selftest; ctx is args->ctx. */
void kserv_glue_vmst_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len);
void kserv_glue_vmst_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len);
/*
 * Accesses pfn from a new kthread: KSERV_VMST_* (a read's value in *value) or
 * a negative errno. expect_fault only changes what is logged.
 */
s64 kserv_glue_vmst_probe(void *ctx, u64 pfn, u32 write, u32 expect_fault, u64 *value);
void kserv_glue_vmst_release(void *ctx, u64 pfn);
void kserv_glue_vmst_log(void *ctx, const char *line, u32 len);

#endif /* KSERV_SELFTEST_H */
