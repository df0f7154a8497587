// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * kserv_shim_glue.c - the kernel-facing half of kserv-shim.
 *
 * KServ is a stock Linux kernel running at EL1 on top of KCore (EL2). This
 * module is its side of the conversation: it checks that KCore is really
 * underneath, shakes hands on the hypercall ABI version and offers debugfs
 * files that the KServ system tests use:
 *
 *   /sys/kernel/debug/kserv/version      read: "X.Y features 0x..", asked anew
 *   /sys/kernel/debug/kserv/hvc          write "<id> [a1 .. a6]" (hex): raw
 *                                        HVC; read: "x0 x1 x2 x3" (hex) of
 *                                        the last call
 *   /sys/kernel/debug/kserv/probe_kcore  write 1: read KCore's memory from a
 *                                        kthread; KCore must make it fault
 *   /sys/kernel/debug/kserv/vm_image     write: the VM self-test's image
 *   /sys/kernel/debug/kserv/vm_sig       write: its signature block
 *   /sys/kernel/debug/kserv/vm_selftest  write 1: run the VM isolation
 *                                        self-test (kserv-core vm_selftest)
 *   /sys/kernel/debug/kserv/guest_image  write: the test guest's flat image
 *   /sys/kernel/debug/kserv/guest_sig    write: its signature block
 *   /sys/kernel/debug/kserv/guest_run    write 1: run the test guest in a
 *                                        protected VM with two vCPUs
 *                                        (kserv-core guest_run)
 *
 * and /dev/kvm, the KVM API (kserv_kvm.c, kserv-core's kvm).
 *
 * All hypercalls and their logic live in the Rust core (kserv-shim/core,
 * declared in kserv_core.h); this file is the thin glue to kernel APIs.
 *
 * The rule that matters most: never issue an HVC unless KCore announced
 * itself. With no hypervisor at EL2 an HVC is undefined and kills the kernel;
 * with Linux's own hyp stub or KVM at EL2 it talks to the wrong party. So the
 * module refuses to load, without a single HVC, when the kernel itself runs
 * at EL2 or when the device tree lacks KCore's /hypervisor node.
 */
#define pr_fmt(fmt) "kserv-shim: " fmt

#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/math64.h>
#include <linux/moduleparam.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <linux/wait.h>
#include <asm/arch_timer.h>
#include <asm/virt.h>

#include "kserv_core.h"

/* How long probe_kcore waits for its reader before declaring it dead. */
#define PROBE_TIMEOUT (5 * HZ)

static struct dentry *kserv_debugfs;

/* Called by the Rust core's panic handler. */
void __noreturn kserv_core_panic(const char *file, size_t file_len, u32 line)
{
	pr_emerg("Rust core panicked at %.*s:%u\n", (int)file_len, file, line);
	BUG();
}

/*
 * The Rust core's memcpy, memset and memcmp: the kernel's own (the core is
 * linked with `ld -r --wrap=...`, so its calls land here rather than on the
 * compiler's generic word-at-a-time versions).
 */
void *__wrap_memcpy(void *dst, const void *src, size_t len);
void *__wrap_memset(void *dst, int c, size_t len);
int __wrap_memcmp(const void *a, const void *b, size_t len);

void *__wrap_memcpy(void *dst, const void *src, size_t len)
{
	return memcpy(dst, src, len);
}

void *__wrap_memset(void *dst, int c, size_t len)
{
	return memset(dst, c, len);
}

int __wrap_memcmp(const void *a, const void *b, size_t len)
{
	return memcmp(a, b, len);
}

/*
 * Decides, without any hypercall, whether KCore is underneath this kernel.
 * Returns 0 and the ABI version the device tree announces, or -ENODEV after
 * saying why not.
 */
static int kcore_underneath(u32 *dt_abi)
{
	const char *compat = kserv_core_dt_hypervisor_compatible();
	struct device_node *np;
	int ret;

	if (is_kernel_in_hyp_mode()) {
		pr_err("no KCore underneath this kernel (the kernel runs at EL2 itself)\n");
		return -ENODEV;
	}
	np = of_find_compatible_node(NULL, NULL, compat);
	if (!np) {
		pr_err("no KCore underneath this kernel (no device-tree node compatible \"%s\")\n",
		       compat);
		return -ENODEV;
	}
	ret = of_property_read_u32(np, kserv_core_dt_abi_version_prop(), dt_abi);
	if (ret) {
		pr_err("no KCore underneath this kernel (%pOF lacks a valid \"%s\")\n", np,
		       kserv_core_dt_abi_version_prop());
		of_node_put(np);
		return -ENODEV;
	}
	of_node_put(np);
	return 0;
}

/* ---- debugfs: version ---------------------------------------------------- */

static ssize_t version_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct kcore_version v;
	char buf[64];
	s64 status;
	int n;

	status = kserv_core_version(&v);
	if (status)
		n = scnprintf(buf, sizeof(buf), "error %lld\n", status);
	else
		n = scnprintf(buf, sizeof(buf), "%u.%u features 0x%llx\n", v.major, v.minor,
			      v.features);
	return simple_read_from_buffer(ubuf, count, ppos, buf, n);
}

static const struct file_operations version_fops = {
	.owner = THIS_MODULE,
	.read = version_read,
	.llseek = default_llseek,
};

/* ---- debugfs: hvc -------------------------------------------------------- */

static DEFINE_MUTEX(hvc_lock);
static u64 hvc_last[4];
static bool hvc_called;

static ssize_t hvc_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[256];
	u64 regs[8];

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	if (kserv_core_parse_hvc(buf, count, regs))
		return -EINVAL;

	mutex_lock(&hvc_lock);
	kserv_core_hvc(regs);
	memcpy(hvc_last, regs, sizeof(hvc_last));
	hvc_called = true;
	mutex_unlock(&hvc_lock);
	return count;
}

static ssize_t hvc_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[80];
	int n;

	mutex_lock(&hvc_lock);
	if (!hvc_called) {
		mutex_unlock(&hvc_lock);
		return -ENODATA;
	}
	n = scnprintf(buf, sizeof(buf), "%llx %llx %llx %llx\n", hvc_last[0], hvc_last[1],
		      hvc_last[2], hvc_last[3]);
	mutex_unlock(&hvc_lock);
	return simple_read_from_buffer(ubuf, count, ppos, buf, n);
}

static const struct file_operations hvc_fops = {
	.owner = THIS_MODULE,
	.read = hvc_read,
	.write = hvc_write,
	.llseek = default_llseek,
};

/* ---- debugfs: probe_kcore ------------------------------------------------ */

/*
 * Shared between the writer and the reader kthread. Heap-allocated, and leaked
 * (with the mapping) when the reader never comes back: it died holding them.
 */
struct probe_ctx {
	struct completion done;
	void *mem;		/* from memremap, or */
	void __iomem *io;	/* from ioremap */
	u64 value;
};

static int probe_reader(void *data)
{
	struct probe_ctx *ctx = data;

	/* KCore is expected to answer this load with a synchronous external abort. */
	if (ctx->mem)
		ctx->value = READ_ONCE(*(u64 *)ctx->mem);
	else
		ctx->value = readq(ctx->io);
	complete(&ctx->done);
	return 0;
}

/* The base of the first /reserved-memory child that covers KCore. */
static int kcore_reserved_base(phys_addr_t *base)
{
	const char *compat = kserv_core_dt_reserved_compatible();
	struct device_node *parent, *child;
	struct resource res;
	int ret = -ENOENT;

	parent = of_find_node_by_path("/reserved-memory");
	if (!parent)
		return -ENOENT;
	for_each_child_of_node(parent, child) {
		if (!of_device_is_compatible(child, compat))
			continue;
		ret = of_address_to_resource(child, 0, &res);
		if (!ret)
			*base = res.start;
		of_node_put(child);
		break;
	}
	of_node_put(parent);
	return ret;
}

static ssize_t probe_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	struct task_struct *reader;
	struct kcore_version v;
	struct probe_ctx *ctx;
	phys_addr_t pa;
	bool go, pass;
	s64 status;
	int ret;

	ret = kstrtobool_from_user(ubuf, count, &go);
	if (ret)
		return ret;
	if (!go)
		return -EINVAL;

	ret = kcore_reserved_base(&pa);
	if (ret) {
		pr_info("probe_kcore: FAIL no /reserved-memory node compatible \"%s\" (%d)\n",
			kserv_core_dt_reserved_compatible(), ret);
		return -EIO;
	}

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	init_completion(&ctx->done);
	ctx->mem = memremap(pa, PAGE_SIZE, MEMREMAP_WB);
	if (!ctx->mem) {
		ctx->io = ioremap(pa, PAGE_SIZE);
		if (!ctx->io) {
			pr_info("probe_kcore: FAIL cannot map %pa\n", &pa);
			kfree(ctx);
			return -EIO;
		}
	}
	pr_info("probe_kcore: reading KCore memory at %pa (%s) from a kthread\n", &pa,
		ctx->mem ? "memremap" : "ioremap");

	reader = kthread_run(probe_reader, ctx, "kserv-probe");
	if (IS_ERR(reader)) {
		pr_info("probe_kcore: FAIL cannot start the reader (%ld)\n", PTR_ERR(reader));
		if (ctx->mem)
			memunmap(ctx->mem);
		else
			iounmap(ctx->io);
		kfree(ctx);
		return -EIO;
	}

	if (!wait_for_completion_timeout(&ctx->done, PROBE_TIMEOUT)) {
		pr_info("probe_kcore: PASS reader faulted\n");
		pass = true;
		/*
		 * ctx and the mapping stay allocated, and the module pinned: should
		 * the reader only be slow, it still runs module code on them.
		 */
		__module_get(THIS_MODULE);
	} else {
		pr_info("probe_kcore: FAIL read 0x%016llx\n", ctx->value);
		pass = false;
		if (ctx->mem)
			memunmap(ctx->mem);
		else
			iounmap(ctx->io);
		kfree(ctx);
	}

	status = kserv_core_version(&v);
	if (status) {
		pr_info("probe_kcore: FAIL KCore no longer answers (status %lld)\n", status);
		pass = false;
	} else {
		pr_info("probe_kcore: KCore still answers (%u.%u)\n", v.major, v.minor);
	}
	return pass ? count : -EIO;
}

static const struct file_operations probe_fops = {
	.owner = THIS_MODULE,
	.write = probe_write,
	.llseek = default_llseek,
};

/* ---- debugfs: vm_image, vm_sig, vm_selftest ------------------------------ */

/*
 * The VM isolation self-test. The scenario and its expectations live in the
 * Rust core (kserv_core_vm_selftest); this glue allocates the pages, copies
 * bytes in and out of them through the linear map, makes sacrificial kthreads
 * touch pages KServ gave away, and frees only the pages the core hands back
 * (KServ's again, as KCore confirmed). A page the core does not hand back may
 * still be KCore's or a VM's: it is never freed, whatever happens.
 */

/*
 * Every page of a run comes from one naturally aligned 2 MiB block of its
 * own (order 9, split into pages): KCore takes pages out of KServ's stage 2
 * by whole leaves (up to 2 MiB) and KServ faults the rest back in, so the
 * stage-2 churn the test causes stays inside memory no one else touches, and
 * where each page lies in its block is the same on every run. Pages: both
 * VMs' pools first (aligned), then each VM's extra pool page and image
 * pages, the memory pages, the signature page. The rest of the block is
 * unused and freed with the pages the core gives back.
 */
#define VMST_BLOCK_ORDER 9
#define VMST_BLOCK_PAGES (1U << VMST_BLOCK_ORDER)
/* Every page one run may use. */
#define VMST_MAX_PAGES \
	(2 * (KSERV_VMST_POOL_PAGES + 1 + KSERV_VMST_MAX_IMAGE_PAGES) + KSERV_VMST_MEM_PAGES + 1)
/* How long a probing kthread gets to finish or die. */
#define VMST_PROBE_TIMEOUT (10 * HZ)
/* What a probing kthread writes. */
#define VMST_WRITE_MARK 0x4b53455256574d4bULL

static_assert(PAGE_SIZE == 4096, "KCore's ownership granule is 4 KiB");
static_assert(VMST_MAX_PAGES <= VMST_BLOCK_PAGES);

static DEFINE_MUTEX(vmst_lock);
static u8 *vmst_image;		/* KSERV_VMST_MAX_IMAGE_LEN bytes, vmalloc'd on first write */
static size_t vmst_image_len;
static u8 vmst_sig[KSERV_VMST_SIG_LEN];
static size_t vmst_sig_len;
static bool vmst_pinned;

struct vmst_run {
	struct kserv_vmst_args args;
	struct page *block;			/* VMST_BLOCK_PAGES pages */
	unsigned int used;			/* pages handed to the core: block[0..used) */
	bool released[VMST_MAX_PAGES];		/* the core gave it back: free it */
};

/* The index of pfn among the pages handed to the core, or -1. */
static int vmst_index(struct vmst_run *run, u64 pfn)
{
	u64 first = page_to_pfn(run->block);

	return pfn >= first && pfn - first < run->used ? (int)(pfn - first) : -1;
}

/* The linear-map address of byte offset of one of this run's pages. */
static u8 *vmst_addr(struct vmst_run *run, u64 pfn, u32 offset, u32 len)
{
	int i = vmst_index(run, pfn);

	if (WARN_ONCE(i < 0 || offset > PAGE_SIZE || len > PAGE_SIZE - offset,
		      "kserv-shim: vm_selftest: bad access to pfn %#llx +%u len %u\n", pfn, offset,
		      len))
		return NULL;
	return (u8 *)page_address(run->block + i) + offset;
}

void kserv_glue_vmst_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len)
{
	u8 *dst = vmst_addr(ctx, pfn, offset, len);

	if (dst)
		memcpy(dst, data, len);
}

void kserv_glue_vmst_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len)
{
	const u8 *src = vmst_addr(ctx, pfn, offset, len);

	if (src)
		memcpy(buf, src, len);
	else
		memset(buf, 0xff, len);
}

void kserv_glue_vmst_release(void *ctx, u64 pfn)
{
	struct vmst_run *run = ctx;
	int i = vmst_index(run, pfn);

	if (!WARN_ONCE(i < 0, "kserv-shim: vm_selftest: release of foreign pfn %#llx\n", pfn))
		run->released[i] = true;
}

void kserv_glue_vmst_log(void *ctx, const char *line, u32 len)
{
	pr_info("vm_selftest: %.*s\n", (int)len, line);
}

/*
 * Shared between the prober and its kthread. Leaked when the kthread does
 * not come back: it died (or may still run) holding it.
 */
struct vmst_probe {
	struct completion done;
	u64 *addr;
	u64 value;
	bool write;
};

static int vmst_prober(void *data)
{
	struct vmst_probe *p = data;

	/*
	 * KCore answers this access with a synchronous external abort when the
	 * page is not KServ's: the kernel's Oops then kills this thread.
	 */
	if (p->write)
		WRITE_ONCE(*p->addr, VMST_WRITE_MARK);
	else
		p->value = READ_ONCE(*p->addr);
	/* Never returns into module code once the prober may free p. */
	kthread_complete_and_exit(&p->done, 0);
}

/* Pins the module for good: a kthread that ran its code died or may still run. */
static void vmst_pin(void)
{
	if (!vmst_pinned) {
		__module_get(THIS_MODULE);
		vmst_pinned = true;
	}
}

s64 kserv_glue_vmst_probe(void *ctx, u64 pfn, u32 write, u32 expect_fault, u64 *value)
{
	const char *name = write ? "kserv-vmwrite" : "kserv-vmread";
	unsigned long deadline = jiffies + VMST_PROBE_TIMEOUT;
	struct task_struct *task;
	struct vmst_probe *p;
	s64 result;
	u8 *addr;

	addr = vmst_addr(ctx, pfn, 0, sizeof(u64));
	if (!addr)
		return -EINVAL;
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	init_completion(&p->done);
	p->addr = (u64 *)addr;
	p->write = write;

	task = kthread_create(vmst_prober, p, "%s", name);
	if (IS_ERR(task)) {
		kfree(p);
		return PTR_ERR(task);
	}
	get_task_struct(task);
	if (expect_fault)
		pr_info("vm_selftest: kthread %s %s pfn %#llx through the linear map (an abort Oops is expected)\n",
			name, write ? "writes" : "reads", pfn);
	wake_up_process(task);

	for (;;) {
		if (wait_for_completion_timeout(&p->done, msecs_to_jiffies(20))) {
			result = KSERV_VMST_COMPLETED;
			break;
		}
		if (READ_ONCE(task->flags) & PF_EXITING) {
			/* Exiting without completing: killed by the abort's Oops. */
			smp_rmb();
			result = completion_done(&p->done) ? KSERV_VMST_COMPLETED : KSERV_VMST_FAULTED;
			break;
		}
		if (time_after(jiffies, deadline)) {
			result = KSERV_VMST_HUNG;
			break;
		}
	}
	put_task_struct(task);

	if (result == KSERV_VMST_COMPLETED) {
		*value = p->value;
		kfree(p);
	} else {
		vmst_pin();
	}
	return result;
}

/* Hands the next page of the block to the core; returns its pfn. */
static u64 vmst_take(struct vmst_run *run)
{
	return page_to_pfn(run->block + run->used++);
}

/* Allocates the run's block and lays its pages out (see VMST_BLOCK_ORDER). */
static int vmst_alloc(struct vmst_run *run, size_t image_pages)
{
	struct kserv_vmst_args *a = &run->args;
	unsigned int v, i;

	/* The pools come first: a naturally aligned block keeps them aligned. */
	BUILD_BUG_ON(!is_power_of_2(KSERV_VMST_POOL_PAGES));
	if (image_pages > KSERV_VMST_MAX_IMAGE_PAGES)
		return -EINVAL;
	run->block = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, VMST_BLOCK_ORDER);
	if (!run->block)
		return -ENOMEM;
	/* Each page can be freed alone from now on. */
	split_page(run->block, VMST_BLOCK_ORDER);
	run->used = 0;
	for (v = 0; v < 2; v++) {
		a->vm[v].pool_pfn = vmst_take(run);
		for (i = 1; i < KSERV_VMST_POOL_PAGES; i++)
			vmst_take(run);
	}
	for (v = 0; v < 2; v++) {
		a->vm[v].extra_pool_pfn = vmst_take(run);
		for (i = 0; i < image_pages; i++)
			a->vm[v].image_pfns[i] = vmst_take(run);
	}
	for (i = 0; i < KSERV_VMST_MEM_PAGES; i++)
		a->mem_pfns[i] = vmst_take(run);
	a->sig_pfn = vmst_take(run);
	a->pool_pages = KSERV_VMST_POOL_PAGES;
	return 0;
}

/*
 * Frees the pages the core gave back and the block's unused ones; the others
 * may still be KCore's or a VM's and are never freed. Returns how many are
 * kept.
 */
static unsigned int vmst_free(struct vmst_run *run)
{
	unsigned int i, kept = 0;

	for (i = 0; i < VMST_BLOCK_PAGES; i++) {
		if (i >= run->used || run->released[i]) {
			__free_page(run->block + i);
		} else {
			pr_warn("vm_selftest: pfn %#lx not given back: kept, never freed\n",
				page_to_pfn(run->block + i));
			kept++;
		}
	}
	return kept;
}

static int vm_image_open(struct inode *inode, struct file *file)
{
	/* Every open for writing starts a new image. */
	if (file->f_mode & FMODE_WRITE) {
		mutex_lock(&vmst_lock);
		vmst_image_len = 0;
		mutex_unlock(&vmst_lock);
	}
	return nonseekable_open(inode, file);
}

static ssize_t vm_image_write(struct file *file, const char __user *ubuf, size_t count,
			      loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&vmst_lock);
	if (!vmst_image)
		vmst_image = vzalloc(KSERV_VMST_MAX_IMAGE_LEN);
	if (!vmst_image) {
		n = -ENOMEM;
	} else if (*ppos + count > KSERV_VMST_MAX_IMAGE_LEN) {
		n = -EFBIG;
	} else {
		n = simple_write_to_buffer(vmst_image, KSERV_VMST_MAX_IMAGE_LEN, ppos, ubuf, count);
		if (n > 0)
			vmst_image_len = max_t(size_t, vmst_image_len, *ppos);
	}
	mutex_unlock(&vmst_lock);
	return n;
}

static const struct file_operations vm_image_fops = {
	.owner = THIS_MODULE,
	.open = vm_image_open,
	.write = vm_image_write,
};

static int vm_sig_open(struct inode *inode, struct file *file)
{
	if (file->f_mode & FMODE_WRITE) {
		mutex_lock(&vmst_lock);
		vmst_sig_len = 0;
		memset(vmst_sig, 0, sizeof(vmst_sig));
		mutex_unlock(&vmst_lock);
	}
	return nonseekable_open(inode, file);
}

static ssize_t vm_sig_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&vmst_lock);
	if (*ppos + count > sizeof(vmst_sig)) {
		n = -EFBIG;
	} else {
		n = simple_write_to_buffer(vmst_sig, sizeof(vmst_sig), ppos, ubuf, count);
		if (n > 0)
			vmst_sig_len = max_t(size_t, vmst_sig_len, *ppos);
	}
	mutex_unlock(&vmst_lock);
	return n;
}

static const struct file_operations vm_sig_fops = {
	.owner = THIS_MODULE,
	.open = vm_sig_open,
	.write = vm_sig_write,
};

static ssize_t vm_selftest_write(struct file *file, const char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	struct vmst_run *run;
	size_t image_pages;
	unsigned int kept;
	u32 failed;
	bool go;
	int ret;

	ret = kstrtobool_from_user(ubuf, count, &go);
	if (ret)
		return ret;
	if (!go)
		return -EINVAL;
	if (kserv_core_vmst_args_size() != sizeof(struct kserv_vmst_args)) {
		pr_err("vm_selftest: the Rust core's arguments are %zu bytes, the glue's %zu\n",
		       kserv_core_vmst_args_size(), sizeof(struct kserv_vmst_args));
		return -EINVAL;
	}

	mutex_lock(&vmst_lock);
	if (!vmst_image_len || vmst_sig_len < KSERV_SIG_BLOCK_MIN) {
		pr_info("vm_selftest: setup: FAIL write the image to vm_image (have %zu bytes) and its signature block (%u to %zu bytes) to vm_sig (have %zu) first\n",
			vmst_image_len, KSERV_SIG_BLOCK_MIN, sizeof(vmst_sig), vmst_sig_len);
		ret = -EINVAL;
		goto out;
	}
	run = kzalloc(sizeof(*run), GFP_KERNEL);
	if (!run) {
		ret = -ENOMEM;
		goto out;
	}
	image_pages = DIV_ROUND_UP(vmst_image_len, PAGE_SIZE);
	ret = vmst_alloc(run, image_pages);
	if (ret) {
		pr_info("vm_selftest: setup: FAIL cannot allocate a 2 MiB block of pages (%d)\n",
			ret);
		kfree(run);
		goto out;
	}
	run->args.ctx = run;
	run->args.image = vmst_image;
	run->args.image_len = vmst_image_len;
	run->args.sig = vmst_sig;
	pr_info("vm_selftest: start: image of %zu bytes (%zu pages a copy), %u pages at pfn %#lx\n",
		vmst_image_len, image_pages, run->used, page_to_pfn(run->block));

	failed = kserv_core_vm_selftest(&run->args);

	kept = vmst_free(run);
	if (kept)
		pr_warn("vm_selftest: %u pages kept: KCore may still own them\n", kept);
	kfree(run);
	ret = failed ? -EIO : 0;
out:
	mutex_unlock(&vmst_lock);
	return ret ? ret : count;
}

static const struct file_operations vm_selftest_fops = {
	.owner = THIS_MODULE,
	.write = vm_selftest_write,
	.llseek = default_llseek,
};

/* ---- debugfs: guest_image, guest_sig, guest_run ------------------------- */

/*
 * Runs kcore-test-guest in a protected VM with two vCPUs. The VM, the
 * emulation of the guest's devices and every check live in the Rust core
 * (kserv_core_guest_run, kserv-core's guest_run); this glue allocates and
 * frees pages and the threads' shared state, runs vCPU i on a kthread bound
 * to CPU i, and lets those threads sleep and wake each other. The write of
 * "1" to guest_run runs synchronously: 0 on PASS, -EIO otherwise.
 */

/* Wall-clock limit of a run in seconds; 0: the core's default (60 s). */
static unsigned int guest_run_timeout;
module_param(guest_run_timeout, uint, 0644);
MODULE_PARM_DESC(guest_run_timeout, "guest_run's time limit in seconds (0: 60)");

/* Largest block kserv_glue_gr_alloc hands out (the core asks for 4 pages). */
#define GR_MAX_ORDER 4

static DEFINE_MUTEX(gr_lock);
static u8 *gr_image;		/* KSERV_GR_MAX_IMAGE_LEN bytes, vmalloc'd on first write */
static size_t gr_image_len;
static u8 gr_sig[KSERV_GR_SIG_LEN];
static size_t gr_sig_len;
static bool gr_pinned;

struct gr_run;

/* One vCPU's kthread and what it sleeps on. */
struct gr_vcpu {
	struct gr_run *run;
	unsigned int idx;
	wait_queue_head_t wq;
	atomic_t kick;			/* a wake-up since its last wait */
	struct completion done;		/* the kthread is finished */
};

struct gr_run {
	struct kserv_gr_args args;
	struct gr_vcpu vcpu[KSERV_GR_VCPUS];
	u64 freq;			/* CNTFRQ_EL0, never 0 */
};

/* The linear-map address of a page the core holds, checked. */
static u8 *gr_addr(u64 pfn, u32 offset, u32 len)
{
	if (WARN_ONCE(!pfn_valid(pfn) || offset > PAGE_SIZE || len > PAGE_SIZE - offset,
		      "kserv-shim: guest_run: bad access to pfn %#llx +%u len %u\n", pfn, offset,
		      len))
		return NULL;
	return (u8 *)page_address(pfn_to_page(pfn)) + offset;
}

u64 kserv_glue_gr_alloc(void *ctx, u32 order)
{
	struct page *p;

	if (order > GR_MAX_ORDER)
		return 0;
	p = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, order);
	if (!p)
		return 0;
	/* Each page can be freed alone from now on. */
	if (order)
		split_page(p, order);
	return page_to_pfn(p);
}

void kserv_glue_gr_free(void *ctx, u64 pfn)
{
	if (!WARN_ONCE(!pfn_valid(pfn), "kserv-shim: guest_run: free of pfn %#llx\n", pfn))
		__free_page(pfn_to_page(pfn));
}

void kserv_glue_gr_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len)
{
	u8 *dst = gr_addr(pfn, offset, len);

	if (dst)
		memcpy(dst, data, len);
}

void kserv_glue_gr_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len)
{
	const u8 *src = gr_addr(pfn, offset, len);

	if (src)
		memcpy(buf, src, len);
	else
		memset(buf, 0, len);
}

void kserv_glue_gr_log(void *ctx, const char *line, u32 len)
{
	pr_info("guest_run: %.*s\n", (int)len, line);
}

u64 kserv_glue_gr_now(void)
{
	return __arch_counter_get_cntpct();
}

u64 kserv_glue_gr_frequency(void)
{
	return arch_timer_get_cntfrq();
}

u32 kserv_glue_gr_cpu(void)
{
	return raw_smp_processor_id();
}

void kserv_glue_gr_relax(void)
{
	cond_resched();
}

static int gr_vcpu_thread(void *data)
{
	struct gr_vcpu *v = data;

	kserv_core_guest_vcpu(&v->run->args, v->idx);
	/* Never returns into module code once the runner may free v. */
	kthread_complete_and_exit(&v->done, 0);
}

s64 kserv_glue_gr_start(void *ctx, u32 idx)
{
	struct gr_run *run = ctx;
	struct task_struct *task;

	if (idx >= KSERV_GR_VCPUS)
		return -EINVAL;
	if (!cpu_online(idx))
		return -ENODEV;
	/* vCPU i on CPU i: kserv-vcpu<i> is bound there for its whole life. */
	task = kthread_create_on_cpu(gr_vcpu_thread, &run->vcpu[idx], idx, "kserv-vcpu%u");
	if (IS_ERR(task))
		return PTR_ERR(task);
	wake_up_process(task);
	return 0;
}

/*
 * How long until the counter reaches deadline, at most a second (callers
 * loop): the time in nanoseconds, 0 if it has passed.
 */
static u64 gr_ns_until(struct gr_run *run, u64 deadline)
{
	u64 now = __arch_counter_get_cntpct();

	if (deadline <= now)
		return 0;
	return div64_u64(min(deadline - now, run->freq) * NSEC_PER_SEC, run->freq);
}

u32 kserv_glue_gr_join(void *ctx, u32 idx, u64 deadline)
{
	struct gr_run *run = ctx;
	u64 ns;

	if (idx >= KSERV_GR_VCPUS)
		return 1;
	ns = gr_ns_until(run, deadline);
	return wait_for_completion_timeout(&run->vcpu[idx].done,
					   nsecs_to_jiffies(ns) + (ns ? 1 : 0)) ? 1 : 0;
}

void kserv_glue_gr_wait(void *ctx, u32 idx, u64 deadline)
{
	struct gr_run *run = ctx;
	struct gr_vcpu *v;
	u64 ns;

	if (idx >= KSERV_GR_VCPUS)
		return;
	v = &run->vcpu[idx];
	ns = gr_ns_until(run, deadline);
	if (ns)
		wait_event_interruptible_hrtimeout(v->wq, atomic_read_acquire(&v->kick),
						   ns_to_ktime(ns));
	/* The core checks everything it waits for after each wait. */
	atomic_set(&v->kick, 0);
}

void kserv_glue_gr_wake(void *ctx, u32 idx)
{
	struct gr_run *run = ctx;
	struct gr_vcpu *v;

	if (idx >= KSERV_GR_VCPUS)
		return;
	v = &run->vcpu[idx];
	/* After the core's own stores: the woken thread sees what it is for. */
	atomic_set_release(&v->kick, 1);
	wake_up(&v->wq);
}

static int guest_image_open(struct inode *inode, struct file *file)
{
	/* Every open for writing starts a new image. */
	if (file->f_mode & FMODE_WRITE) {
		mutex_lock(&gr_lock);
		gr_image_len = 0;
		mutex_unlock(&gr_lock);
	}
	return nonseekable_open(inode, file);
}

static ssize_t guest_image_write(struct file *file, const char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&gr_lock);
	if (!gr_image)
		gr_image = vzalloc(KSERV_GR_MAX_IMAGE_LEN);
	if (!gr_image) {
		n = -ENOMEM;
	} else if (*ppos + count > KSERV_GR_MAX_IMAGE_LEN) {
		n = -EFBIG;
	} else {
		n = simple_write_to_buffer(gr_image, KSERV_GR_MAX_IMAGE_LEN, ppos, ubuf, count);
		if (n > 0)
			gr_image_len = max_t(size_t, gr_image_len, *ppos);
	}
	mutex_unlock(&gr_lock);
	return n;
}

static const struct file_operations guest_image_fops = {
	.owner = THIS_MODULE,
	.open = guest_image_open,
	.write = guest_image_write,
};

static int guest_sig_open(struct inode *inode, struct file *file)
{
	if (file->f_mode & FMODE_WRITE) {
		mutex_lock(&gr_lock);
		gr_sig_len = 0;
		memset(gr_sig, 0, sizeof(gr_sig));
		mutex_unlock(&gr_lock);
	}
	return nonseekable_open(inode, file);
}

static ssize_t guest_sig_write(struct file *file, const char __user *ubuf, size_t count,
			       loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&gr_lock);
	if (*ppos + count > sizeof(gr_sig)) {
		n = -EFBIG;
	} else {
		n = simple_write_to_buffer(gr_sig, sizeof(gr_sig), ppos, ubuf, count);
		if (n > 0)
			gr_sig_len = max_t(size_t, gr_sig_len, *ppos);
	}
	mutex_unlock(&gr_lock);
	return n;
}

static const struct file_operations guest_sig_fops = {
	.owner = THIS_MODULE,
	.open = guest_sig_open,
	.write = guest_sig_write,
};

static ssize_t guest_run_write(struct file *file, const char __user *ubuf, size_t count,
			       loff_t *ppos)
{
	size_t state_size = kserv_core_gr_state_size();
	struct gr_run *run;
	void *state;
	unsigned int i;
	u32 result;
	bool go;
	int ret;

	ret = kstrtobool_from_user(ubuf, count, &go);
	if (ret)
		return ret;
	if (!go)
		return -EINVAL;
	if (kserv_core_gr_args_size() != sizeof(struct kserv_gr_args) ||
	    kserv_core_gr_vcpus() != KSERV_GR_VCPUS) {
		pr_err("guest_run: the Rust core's arguments (%zu bytes, %u vCPUs) differ from the glue's (%zu, %u)\n",
		       kserv_core_gr_args_size(), kserv_core_gr_vcpus(),
		       sizeof(struct kserv_gr_args), KSERV_GR_VCPUS);
		return -EINVAL;
	}

	mutex_lock(&gr_lock);
	if (!gr_image_len || gr_sig_len < KSERV_SIG_BLOCK_MIN) {
		pr_info("guest_run: setup: FAIL write the image to guest_image (have %zu bytes) and its signature block (%u to %zu bytes) to guest_sig (have %zu) first\n",
			gr_image_len, KSERV_SIG_BLOCK_MIN, sizeof(gr_sig), gr_sig_len);
		ret = -EINVAL;
		goto out;
	}
	run = kzalloc(sizeof(*run), GFP_KERNEL);
	state = kvzalloc(state_size, GFP_KERNEL);
	if (!run || !state) {
		kfree(run);
		kvfree(state);
		ret = -ENOMEM;
		goto out;
	}
	for (i = 0; i < KSERV_GR_VCPUS; i++) {
		run->vcpu[i].run = run;
		run->vcpu[i].idx = i;
		init_waitqueue_head(&run->vcpu[i].wq);
		atomic_set(&run->vcpu[i].kick, 0);
		init_completion(&run->vcpu[i].done);
	}
	run->freq = arch_timer_get_cntfrq() ?: 1;
	run->args.ctx = run;
	run->args.state = state;
	run->args.state_size = state_size;
	run->args.image = gr_image;
	run->args.image_len = gr_image_len;
	run->args.sig = gr_sig;
	run->args.timeout_secs = READ_ONCE(guest_run_timeout);

	result = kserv_core_guest_run(&run->args);

	if (result == KSERV_GR_STUCK) {
		/*
		 * A vCPU kthread never came back: it may still use the run, the
		 * state and the image, and run module code. All stay, for good.
		 */
		pr_warn("guest_run: a vCPU thread is stuck: its state is kept and the module pinned\n");
		gr_image = NULL;
		gr_image_len = 0;
		if (!gr_pinned) {
			__module_get(THIS_MODULE);
			gr_pinned = true;
		}
	} else {
		kvfree(state);
		kfree(run);
	}
	ret = result == KSERV_GR_PASS ? 0 : -EIO;
out:
	mutex_unlock(&gr_lock);
	return ret ? ret : count;
}

static const struct file_operations guest_run_fops = {
	.owner = THIS_MODULE,
	.write = guest_run_write,
	.llseek = default_llseek,
};

/* ---- module -------------------------------------------------------------- */

static int __init kserv_shim_init(void)
{
	u32 ours = kserv_core_abi_version();
	struct kcore_version v;
	s64 status;
	u32 dt_abi;
	int ret;

	ret = kcore_underneath(&dt_abi);
	if (ret)
		return ret;

	status = kserv_core_version(&v);
	if (status) {
		pr_err("KCore did not answer the version hypercall (status %lld)\n", status);
		return -ENODEV;
	}
	pr_info("KCore ABI version %u.%u, features 0x%llx\n", v.major, v.minor, v.features);
	if (dt_abi != ((u32)v.major << 16 | v.minor))
		pr_warn("the device tree announces ABI %u.%u but KCore answers %u.%u\n",
			dt_abi >> 16, dt_abi & 0xffff, v.major, v.minor);

	switch (kserv_core_check_abi(v.major, v.minor)) {
	case KSERV_CORE_COMPATIBLE:
		break;
	case KSERV_CORE_MAJOR_MISMATCH:
		pr_err("KCore ABI %u.%u is incompatible with this shim's %u.%u (major differs)\n",
		       v.major, v.minor, ours >> 16, ours & 0xffff);
		return -EPROTONOSUPPORT;
	default:
		pr_err("KCore ABI %u.%u is older than this shim's %u.%u\n", v.major, v.minor,
		       ours >> 16, ours & 0xffff);
		return -EPROTONOSUPPORT;
	}

	kserv_debugfs = debugfs_create_dir("kserv", NULL);
	debugfs_create_file("version", 0444, kserv_debugfs, NULL, &version_fops);
	debugfs_create_file("hvc", 0600, kserv_debugfs, NULL, &hvc_fops);
	debugfs_create_file("probe_kcore", 0200, kserv_debugfs, NULL, &probe_fops);
	debugfs_create_file("vm_image", 0200, kserv_debugfs, NULL, &vm_image_fops);
	debugfs_create_file("vm_sig", 0200, kserv_debugfs, NULL, &vm_sig_fops);
	debugfs_create_file("vm_selftest", 0200, kserv_debugfs, NULL, &vm_selftest_fops);
	debugfs_create_file("guest_image", 0200, kserv_debugfs, NULL, &guest_image_fops);
	debugfs_create_file("guest_sig", 0200, kserv_debugfs, NULL, &guest_sig_fops);
	debugfs_create_file("guest_run", 0200, kserv_debugfs, NULL, &guest_run_fops);
	/* Without /dev/kvm the module still serves its debugfs tests. */
	kserv_kvm_init();
	return 0;
}

static void __exit kserv_shim_exit(void)
{
	kserv_kvm_exit();
	debugfs_remove_recursive(kserv_debugfs);
	vfree(vmst_image);
	vfree(gr_image);
}

module_init(kserv_shim_init);
module_exit(kserv_shim_exit);

MODULE_DESCRIPTION("kserv-shim: KServ's side of the KCore hypervisor");
/* GPL: debugfs and the OF address helpers are GPL-only exports. */
MODULE_LICENSE("GPL");
