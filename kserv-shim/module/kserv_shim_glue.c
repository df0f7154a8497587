// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * kserv_shim_glue.c - the kernel-facing half of kserv-shim.
 *
 * KServ is a stock Linux kernel running at EL1 on top of KCore (EL2). This
 * module is its side of the conversation: it checks that KCore is really
 * underneath, shakes hands on the hypercall ABI version and offers /dev/kvm,
 * the KVM API (kserv_kvm.c, kserv-core's kvm), and one debugfs file:
 *
 *   /sys/kernel/debug/kserv/version      read: "X.Y features 0x..", asked anew
 *
 * The self-tests and raw hypercalls of the test images are kserv_selftest.ko
 * (kserv_selftest_glue.c), which builds on this module: it needs the symbols
 * exported below, so it loads only once this module has found KCore.
 *
 * All hypercalls and their logic live in the Rust core (kserv-shim/core,
 * declared in kserv_core.h); this file is the thin glue to kernel APIs.
 *
 * The rule that matters most: never issue an HVC unless KCore announced
 * itself. With no hypervisor at EL2 an HVC is undefined and kills the kernel;
 * with Linux's own hyp stub or KVM at EL2 it talks to the wrong party. So the
 * module refuses to load, without a single HVC, when the kernel itself runs
 * at EL2 or when the device tree announces no KCore: neither a /hypervisor
 * node nor, on an ACPI machine (where KServ's tree is a stub holding only
 * /chosen, which Linux does not unflatten), /chosen/kcore,abi-version in the
 * flattened tree at /sys/firmware/fdt.
 */
#define pr_fmt(fmt) "kserv-shim: " fmt

#include <linux/acpi.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/kernel_read_file.h>
#include <linux/sizes.h>
#include <linux/vmalloc.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/string.h>
#include <asm/virt.h>

#include "kserv_core.h"

static struct dentry *kserv_debugfs;

/* Called by the Rust core's panic handler. */
void __noreturn kserv_core_panic(const char *file, size_t file_len, u32 line)
{
	pr_emerg("Rust core panicked at %.*s:%u\n", (int)file_len, file, line);
	BUG();
}
EXPORT_SYMBOL_GPL(kserv_core_panic);	/* and kserv_selftest.ko's */

/*
 * The Rust core's memcpy, memset and memcmp: the kernel's own (the core is
 * linked with `ld -r --wrap=...`, so its calls land here rather than on the
 * compiler's generic word-at-a-time versions). kserv_selftest.ko's core
 * calls them too.
 */
void *__wrap_memcpy(void *dst, const void *src, size_t len);
void *__wrap_memset(void *dst, int c, size_t len);
int __wrap_memcmp(const void *a, const void *b, size_t len);

void *__wrap_memcpy(void *dst, const void *src, size_t len)
{
	return memcpy(dst, src, len);
}
EXPORT_SYMBOL_GPL(__wrap_memcpy);

void *__wrap_memset(void *dst, int c, size_t len)
{
	return memset(dst, c, len);
}
EXPORT_SYMBOL_GPL(__wrap_memset);

int __wrap_memcmp(const void *a, const void *b, size_t len)
{
	return memcmp(a, b, len);
}
EXPORT_SYMBOL_GPL(__wrap_memcmp);

/* The Rust core's calls kserv_selftest.ko's probe_kcore makes too. */
EXPORT_SYMBOL_GPL(kserv_core_version);
EXPORT_SYMBOL_GPL(kserv_core_dt_reserved_compatible);

/*
 * On an ACPI machine: the ABI version in /chosen/kcore,abi-version of the
 * flattened tree the kernel booted with (/sys/firmware/fdt). Returns 0 and
 * the version, or -ENODEV. Exported for kserv_attack.ko.
 */
int kserv_shim_chosen_abi(u32 *dt_abi);
int kserv_shim_chosen_abi(u32 *dt_abi)
{
	void *buf = NULL;
	ssize_t n;
	s64 abi;

	if (acpi_disabled)
		return -ENODEV;
	n = kernel_read_file_from_path("/sys/firmware/fdt", 0, &buf, SZ_1M, NULL,
				       READING_UNKNOWN);
	if (n < 0)
		return -ENODEV;
	abi = kserv_core_fdt_chosen_abi(buf, n);
	vfree(buf);
	if (abi < 0)
		return -ENODEV;
	*dt_abi = (u32)abi;
	return 0;
}
EXPORT_SYMBOL_GPL(kserv_shim_chosen_abi);

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
		if (!kserv_shim_chosen_abi(dt_abi)) {
			pr_info("KCore announced in /chosen (ACPI machine)\n");
			return 0;
		}
		pr_err("no KCore underneath this kernel (no device-tree node compatible \"%s\", no /chosen/%s)\n",
		       compat, kserv_core_dt_abi_version_prop());
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
	/* Without /dev/kvm the module still serves its debugfs tests. */
	kserv_kvm_init();
	return 0;
}

static void __exit kserv_shim_exit(void)
{
	kserv_kvm_exit();
	debugfs_remove_recursive(kserv_debugfs);
}

module_init(kserv_shim_init);
module_exit(kserv_shim_exit);

MODULE_DESCRIPTION("kserv-shim: KServ's side of the KCore hypervisor");
/* GPL: debugfs and the OF address helpers are GPL-only exports. */
MODULE_LICENSE("GPL");
