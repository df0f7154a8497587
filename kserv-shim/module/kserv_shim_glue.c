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
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
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
	return 0;
}

static void __exit kserv_shim_exit(void)
{
	debugfs_remove_recursive(kserv_debugfs);
}

module_init(kserv_shim_init);
module_exit(kserv_shim_exit);

MODULE_DESCRIPTION("kserv-shim: KServ's side of the KCore hypervisor");
/* GPL: debugfs and the OF address helpers are GPL-only exports. */
MODULE_LICENSE("GPL");
