// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * kserv_selftest_glue.c - KServ's self-tests against KCore (test images only).
 *
 * The companion of kserv_shim.ko that the production module does without:
 * test-only debugfs files that the KServ system tests use, in
 * /sys/kernel/debug/kserv_selftest/:
 *
 *   hvc          write "<id> [a1 .. a6]" (hex): raw HVC; read: "x0 x1 x2 x3"
 *                (hex) of the last call
 *   probe_kcore  write 1: read KCore's memory from a kthread; KCore must
 *                make it fault
 *   vm_image     write: the VM self-test's image
 *   vm_sig       write: its signature block
 *   vm_selftest  write 1: run the VM isolation self-test (kserv-selftest's
 *                vm_selftest)
 *
 * The hypercalls and the self-test's logic live in the module's Rust core
 * (kserv-shim/selftest, declared in kserv_selftest.h); this file is the thin
 * glue to kernel APIs. It issues HVCs only because it cannot load without
 * kserv_shim.ko: it uses that module's exported symbols (its core's version
 * call, the Rust runtime's panic and memory routines), and kserv_shim loads
 * only when KCore announced itself and shook hands on the ABI.
 */
#define pr_fmt(fmt) "kserv-selftest: " fmt

#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/efi.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/io.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
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

#include "kserv_core.h"
#include "kserv_selftest.h"

/* How long probe_kcore waits for its reader before declaring it dead. */
#define PROBE_TIMEOUT (5 * HZ)

static struct dentry *selftest_debugfs;

/* What starts a test: a write of "1" (or another true kstrtobool word). */
static int write_go(const char __user *ubuf, size_t count)
{
	bool go;
	int ret = kstrtobool_from_user(ubuf, count, &go);

	if (ret)
		return ret;
	return go ? 0 : -EINVAL;
}

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
	if (kserv_selftest_parse_hvc(buf, count, regs))
		return -EINVAL;

	mutex_lock(&hvc_lock);
	kserv_selftest_hvc(regs);
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

/*
 * On an ACPI machine KServ's tree is a stub without /reserved-memory, and
 * KCore marks its memory EfiReservedMemoryType in the EFI memory map: the
 * base of the first such descriptor that is write-back memory. (Firmware
 * that reserves memory of its own below KCore's would make the probe read
 * that instead and fail, never pass wrongly.)
 */
static int kcore_efi_reserved_base(phys_addr_t *base)
{
	efi_memory_desc_t *md;

	if (!efi_enabled(EFI_MEMMAP))
		return -ENOENT;
	for_each_efi_memory_desc(md) {
		if (md->type == EFI_RESERVED_TYPE && (md->attribute & EFI_MEMORY_WB) &&
		    md->num_pages) {
			*base = md->phys_addr;
			return 0;
		}
	}
	return -ENOENT;
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
		return kcore_efi_reserved_base(base);
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
	bool pass;
	s64 status;
	int ret;

	ret = write_go(ubuf, count);
	if (ret)
		return ret;

	ret = kcore_reserved_base(&pa);
	if (ret) {
		pr_info("probe_kcore: FAIL no /reserved-memory node compatible \"%s\" and no reserved EFI memory (%d)\n",
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

/* ---- debugfs uploads: vm_image, vm_sig ---------------------------------- */

/*
 * A buffer a debugfs file fills (its inode's private data): every open for
 * writing starts afresh (empty, zeroed), each write lands at its offset,
 * and what was written reaches len. The buffer is vmalloc'd on first write
 * and kept until the module goes.
 */
struct upload {
	u8 *buf;
	size_t cap;
	size_t len;
};

/* Held by the uploads' writers and by the self-test's runs. */
static DEFINE_MUTEX(vmst_lock);

static int upload_open(struct inode *inode, struct file *file)
{
	struct upload *up = inode->i_private;

	file->private_data = up;
	if (file->f_mode & FMODE_WRITE) {
		mutex_lock(&vmst_lock);
		up->len = 0;
		if (up->buf)
			memset(up->buf, 0, up->cap);
		mutex_unlock(&vmst_lock);
	}
	return nonseekable_open(inode, file);
}

static ssize_t upload_write(struct file *file, const char __user *ubuf, size_t count,
			    loff_t *ppos)
{
	struct upload *up = file->private_data;
	ssize_t n;

	mutex_lock(&vmst_lock);
	if (!up->buf)
		up->buf = vzalloc(up->cap);
	if (!up->buf) {
		n = -ENOMEM;
	} else if (*ppos + count > up->cap) {
		n = -EFBIG;
	} else {
		n = simple_write_to_buffer(up->buf, up->cap, ppos, ubuf, count);
		if (n > 0)
			up->len = max_t(size_t, up->len, *ppos);
	}
	mutex_unlock(&vmst_lock);
	return n;
}

static const struct file_operations upload_fops = {
	.owner = THIS_MODULE,
	.open = upload_open,
	.write = upload_write,
};

/* ---- debugfs: vm_image, vm_sig, vm_selftest ------------------------------ */

/*
 * The VM isolation self-test. The scenario and its expectations live in the
 * Rust core (kserv_selftest_vm_selftest); this glue allocates the pages, copies
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

static struct upload vmst_image = { .cap = KSERV_VMST_MAX_IMAGE_LEN };
static struct upload vmst_sig = { .cap = KSERV_VMST_SIG_LEN };
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
		      "kserv-selftest: vm_selftest: bad access to pfn %#llx +%u len %u\n", pfn, offset,
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

	if (!WARN_ONCE(i < 0, "kserv-selftest: vm_selftest: release of foreign pfn %#llx\n", pfn))
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

static ssize_t vm_selftest_write(struct file *file, const char __user *ubuf, size_t count,
				 loff_t *ppos)
{
	struct vmst_run *run;
	size_t image_pages;
	unsigned int kept;
	u32 failed;
	int ret;

	ret = write_go(ubuf, count);
	if (ret)
		return ret;
	if (kserv_selftest_vmst_args_size() != sizeof(struct kserv_vmst_args)) {
		pr_err("vm_selftest: the Rust core's arguments are %zu bytes, the glue's %zu\n",
		       kserv_selftest_vmst_args_size(), sizeof(struct kserv_vmst_args));
		return -EINVAL;
	}

	mutex_lock(&vmst_lock);
	if (!vmst_image.len || vmst_sig.len < KSERV_SIG_BLOCK_MIN) {
		pr_info("vm_selftest: setup: FAIL write the image to vm_image (have %zu bytes) and its signature block (%u to %zu bytes) to vm_sig (have %zu) first\n",
			vmst_image.len, KSERV_SIG_BLOCK_MIN, vmst_sig.cap, vmst_sig.len);
		ret = -EINVAL;
		goto out;
	}
	run = kzalloc(sizeof(*run), GFP_KERNEL);
	if (!run) {
		ret = -ENOMEM;
		goto out;
	}
	image_pages = DIV_ROUND_UP(vmst_image.len, PAGE_SIZE);
	ret = vmst_alloc(run, image_pages);
	if (ret) {
		pr_info("vm_selftest: setup: FAIL cannot allocate a 2 MiB block of pages (%d)\n",
			ret);
		kfree(run);
		goto out;
	}
	run->args.ctx = run;
	run->args.image = vmst_image.buf;
	run->args.image_len = vmst_image.len;
	run->args.sig = vmst_sig.buf;
	pr_info("vm_selftest: start: image of %zu bytes (%zu pages a copy), %u pages at pfn %#lx\n",
		vmst_image.len, image_pages, run->used, page_to_pfn(run->block));

	failed = kserv_selftest_vm_selftest(&run->args);

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

/* ---- module -------------------------------------------------------------- */

static int __init kserv_selftest_init(void)
{
	selftest_debugfs = debugfs_create_dir("kserv_selftest", NULL);
	debugfs_create_file("hvc", 0600, selftest_debugfs, NULL, &hvc_fops);
	debugfs_create_file("probe_kcore", 0200, selftest_debugfs, NULL, &probe_fops);
	debugfs_create_file("vm_image", 0200, selftest_debugfs, &vmst_image, &upload_fops);
	debugfs_create_file("vm_sig", 0200, selftest_debugfs, &vmst_sig, &upload_fops);
	debugfs_create_file("vm_selftest", 0200, selftest_debugfs, NULL, &vm_selftest_fops);
	return 0;
}

static void __exit kserv_selftest_exit(void)
{
	debugfs_remove_recursive(selftest_debugfs);
	vfree(vmst_image.buf);
	vfree(vmst_sig.buf);
}

module_init(kserv_selftest_init);
module_exit(kserv_selftest_exit);

MODULE_DESCRIPTION("KServ's self-tests against KCore (test images only)");
/* GPL: debugfs, the OF address helpers and kserv_shim's exports are GPL-only. */
MODULE_LICENSE("GPL");
