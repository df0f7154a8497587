// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * kserv_attack.c - a malicious KServ, for the attack suite (test images only).
 *
 * KServ is untrusted: everything this module does, any kernel module could.
 * It plays the attacker against KCore while a protected guest (the victim)
 * runs under kserv-shim's /dev/kvm, and reports for each attack what was
 * expected -- written in the table below, printed before the attack runs --
 * and what happened. KServ's test `attacks` drives it:
 *
 *   /sys/kernel/debug/kserv_attack/run   write "<attack> [seed]": run one
 *                                        attack; read: its report,
 *                                        "expected <text>" and
 *                                        "observed PASS|FAIL <text>"
 *   /sys/kernel/debug/kserv_attack/list  read: "<attack>\t<expected>" lines
 *   /sys/kernel/debug/kserv_attack/info  read: what `scan` found, as
 *                                        "key value" lines
 *   /sys/kernel/debug/kserv_attack/mem   mmap at offset pa: maps that
 *                                        physical page into the caller, with
 *                                        none of /dev/mem's checks
 *   /sys/kernel/debug/kserv_attack/rogue_off  write anything: a KServ that
 *                                        keeps running past its own power-off:
 *                                        another online CPU loops with
 *                                        interrupts off, printing, and this
 *                                        CPU calls PSCI SYSTEM_OFF straight
 *                                        away (no smp_send_stop first);
 *                                        nothing may print after KCore's
 *                                        "system off" line
 *
 * `scan` must run first: it asks KCore who owns every page of RAM
 * (HostPageOwner) and picks the live VM with the most private pages as the
 * victim. The attacks never tear the victim down or run its vCPUs (KServ
 * may always stop a VM: availability is out of scope); every other call is
 * fair game. The VMs the module makes for itself ("sacrificial" VMs) get
 * only pages it allocated, and every such page must come back -- reclaimed,
 * scrubbed by KCore -- before it is freed; a page that does not is never
 * freed and fails the attack.
 *
 * KCore's ABI comes from kcore_abi.h, which the build generates from kcore-abi
 * (kcore/abi/src) beside this file.
 */
#define pr_fmt(fmt) "kserv-attack: " fmt

#include <linux/acpi.h>
#include <linux/arm-smccc.h>
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/io.h>
#include <linux/ioport.h>
#include <linux/jiffies.h>
#include <linux/kernel_read_file.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/of.h>
#include <linux/of_address.h>
#include <uapi/linux/psci.h>
#include <linux/sched.h>
#include <linux/sched/task.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>
#include <asm/virt.h>

/* ---- KCore's host ABI (kcore-abi) ---------------------------------------- */

#include "kcore_abi.h"

/* kserv_shim.ko: KCore's ABI version from /chosen on an ACPI machine. */
int kserv_shim_chosen_abi(u32 *dt_abi);

#define KR_X(n)		(KC_REG_X0 + (n))
#define IRQ_WORD(vintid, prio, state) \
	((u64)(vintid) | (u64)(prio) << KC_IRQ_PRIORITY_SHIFT | KC_IRQ_GROUP1 | \
	 (u64)(state) << KC_IRQ_STATE_SHIFT)

/* The stage 2 of a 40-bit IPA space has a root of two concatenated pages. */
#define ROOT_PAGES		2

struct kc_ret {
	s64 status;
	u64 x1, x2, x3;
};

static struct kc_ret kc(u64 fn, u64 a1, u64 a2, u64 a3, u64 a4, u64 a5)
{
	struct arm_smccc_res res;

	arm_smccc_1_1_hvc(fn, a1, a2, a3, a4, a5, &res);
	return (struct kc_ret){ (s64)res.a0, res.a1, res.a2, res.a3 };
}

static const char *kc_name(s64 status)
{
	return status == KC_SUCCESS ? "ok" : kc_error_name(status);
}

/* Index of a status in the fuzzer's histogram; the last slot is "undefined". */
#define N_STATUS (KC_ERRORS + 2)
static const s64 known_status[N_STATUS - 1] = { KC_SUCCESS, KC_ERROR_CODES };

static int status_slot(s64 status)
{
	int i;

	for (i = 0; i < N_STATUS - 1; i++)
		if (known_status[i] == status)
			return i;
	return N_STATUS - 1;
}

/* ---- the report ---------------------------------------------------------- */

static DEFINE_MUTEX(atk_lock);
static char report[2048];
static char obs[1536];
static size_t obs_len;

static __printf(1, 2) void note(const char *fmt, ...)
{
	va_list ap;

	if (obs_len >= sizeof(obs) - 1)
		return;
	va_start(ap, fmt);
	obs_len += vscnprintf(obs + obs_len, sizeof(obs) - obs_len, fmt, ap);
	va_end(ap);
}

/* Notes a failed expectation and returns false. */
static __printf(1, 2) bool bad(const char *fmt, ...)
{
	va_list ap;

	note("UNEXPECTED: ");
	if (obs_len < sizeof(obs) - 1) {
		va_start(ap, fmt);
		obs_len += vscnprintf(obs + obs_len, sizeof(obs) - obs_len, fmt, ap);
		va_end(ap);
	}
	note("; ");
	return false;
}

/* Checks that a call was refused with one of the allowed codes. */
static bool refused(const char *what, s64 got, s64 want1, s64 want2)
{
	if (got == want1 || got == want2)
		return true;
	return bad("%s returned %lld (%s)", what, got, kc_name(got) ?: "undefined");
}

/* ---- what scan found ----------------------------------------------------- */

struct victim {
	bool found;
	u64 handle;
	unsigned int vcpus;
	u64 guest_pfn;		/* a private page of the victim (Guest) */
	u64 table_pfn;		/* one of its table pages (VmTable) */
	u64 guest_pages, table_pages;
	u64 kcore_pfn, kcore_pages;
	u64 ram_first, ram_last;	/* inclusive pfns */
};
static struct victim vic;

/* ---- pages the module owns ----------------------------------------------- */

/*
 * Every page the module gives KCore is in `pages`: a page goes back to the
 * kernel only once KCore says it is KServ's again (and, if it was a VM's,
 * reads zero). Blocks for VM roots are split into single pages.
 */
#define MAX_PAGES 256
static struct page *pages[MAX_PAGES];
static unsigned int n_pages;
static u64 leaked;

static struct page *take_pages(unsigned int order)
{
	struct page *p;
	unsigned int i, n = 1U << order;

	if (n_pages + n > MAX_PAGES)
		return NULL;
	p = alloc_pages(GFP_KERNEL | __GFP_ZERO, order);
	if (!p)
		return NULL;
	if (order)
		split_page(p, order);
	for (i = 0; i < n; i++)
		pages[n_pages++] = p + i;
	return p;
}

static u64 take_pfn(void)
{
	struct page *p = take_pages(0);

	return p ? page_to_pfn(p) : 0;
}

static bool page_is_zero(struct page *p)
{
	u64 *w = kmap_local_page(p);
	bool zero = true;
	unsigned int i;

	for (i = 0; i < PAGE_SIZE / 8; i++)
		if (w[i]) {
			zero = false;
			break;
		}
	kunmap_local(w);
	return zero;
}

/*
 * Gets every module page back from KCore: tears down whichever VM holds one
 * and reclaims it. Returns the pages reclaimed from VMs; counts the ones
 * that stayed away (or came back dirty) in `leaked`, and never frees them.
 */
static unsigned int give_back(unsigned int *dirty)
{
	unsigned int i, j, kept = 0, reclaimed = 0;
	struct kc_ret r;

	*dirty = 0;
	for (i = 0; i < n_pages; i++) {
		u64 pfn = page_to_pfn(pages[i]);
		bool was_vms = false;

		for (j = 0; j < 3; j++) {
			r = kc(KC_HOST_PAGE_OWNER, pfn, 0, 0, 0, 0);
			if (r.status != KC_SUCCESS || r.x1 == KC_OWNER_HOST)
				break;
			was_vms = r.x1 != KC_OWNER_HOST_SHARED_WITH_GUEST;
			/* Teardown: Denied when the VM is already dying. */
			kc(KC_HOST_TEARDOWN_VM, r.x2, 0, 0, 0, 0);
			kc(KC_HOST_RECLAIM_PAGE, r.x2, pfn, 0, 0, 0);
		}
		if (r.status != KC_SUCCESS || r.x1 != KC_OWNER_HOST) {
			pages[kept++] = pages[i];
			leaked++;
			continue;
		}
		if (was_vms) {
			reclaimed++;
			if (!page_is_zero(pages[i])) {
				(*dirty)++;
				leaked++;
				pages[kept++] = pages[i];
				continue;
			}
		}
		__free_page(pages[i]);
	}
	n_pages = kept;
	return reclaimed;
}

/* Ends an attack that made VMs: everything back, KCore consistent. */
static bool settle(void)
{
	unsigned int dirty, before = leaked, back;
	struct kc_ret r;
	bool ok = true;

	back = give_back(&dirty);
	if (leaked != before)
		ok = bad("%u pages did not come back (%u not scrubbed)", (unsigned int)(leaked - before), dirty);
	note("%u pages reclaimed from VMs", back);
	r = kc(KC_HOST_SELF_CHECK, 0, 0, 0, 0, 0);
	if (r.status != KC_SUCCESS)
		return bad("self-check %lld (%s)", r.status, kc_name(r.status) ?: "undefined");
	if (ok)
		note(", all zero; self-check ok");
	return ok;
}

/* Gives up an attack: notes why, gets every page back, fails. */
#define GIVE_UP(...) ({ bad(__VA_ARGS__); settle(); false; })

/* ---- sacrificial VMs ----------------------------------------------------- */

struct sac_vm {
	u64 handle;
	bool protected;
};

/* A VM with one vCPU and `extra` pool pages beyond its root and vCPU page. */
static int sac_create(struct sac_vm *vm, bool protected, unsigned int extra)
{
	struct page *block = take_pages(2);
	struct kc_ret r;
	unsigned int i;

	if (!block)
		return -ENOMEM;
	r = kc(KC_HOST_CREATE_VM, protected ? KC_VM_PROTECTED : 0, 0, 2, page_to_pfn(block), 4);
	if (r.status != KC_SUCCESS)
		return -EIO;
	vm->handle = r.x1;
	vm->protected = protected;
	if (kc(KC_HOST_CREATE_VCPU, vm->handle, 0, 0, 0, 0).status != KC_SUCCESS)
		return -EIO;
	for (i = 0; i < extra; i++) {
		u64 pfn = take_pfn();

		if (!pfn || kc(KC_HOST_DONATE_VM_POOL, vm->handle, pfn, 0, 0, 0).status != KC_SUCCESS)
			return -EIO;
	}
	return 0;
}

/*
 * A non-protected VM running a three-instruction guest at IPA 0x4000_0000:
 *   0: ldr   w5, [x1]      a 32-bit MMIO read
 *   4: ldrsb x6, [x1]      a sign-extended 8-bit MMIO read
 *   8: b     0
 *  12: b     .             (LOOP_SPIN: spins until a host interrupt)
 * with x1 = 0x1000_0000 (a declared MMIO page), x7.. seeded with markers, so
 * every entry at 0 runs one instruction into an MMIO exit.
 */
#define LOOP_IPA	0x40000000ULL
#define LOOP_MMIO	0x10000000ULL
#define KR_SEED(n)	(0x5eed000000000000ULL | (u64)(n) << 8 | (n))
#define LOOP_SPIN	(LOOP_IPA + 12)
static const u32 loop_code[] = { 0xb9400025, 0x39800026, 0x17fffffe, 0x14000000 };

struct loop_vm {
	struct sac_vm vm;
	u64 code_pfn;
	u64 run_pfn;
	u64 *run;		/* the run page, KServ's */
};

static int loop_create(struct loop_vm *l)
{
	struct page *code, *run;
	u32 *c;
	int ret, n;

	ret = sac_create(&l->vm, false, 6);
	if (ret)
		return ret;
	code = take_pages(0);
	run = take_pages(0);
	if (!code || !run)
		return -ENOMEM;
	c = page_address(code);
	memcpy(c, loop_code, sizeof(loop_code));
	flush_dcache_page(code);
	l->code_pfn = page_to_pfn(code);
	l->run_pfn = page_to_pfn(run);
	l->run = page_address(run);
	if (kc(KC_HOST_SHARE_GUEST, l->vm.handle, l->code_pfn, LOOP_IPA >> PAGE_SHIFT, 0, 0).status)
		return -EIO;
	if (kc(KC_HOST_DECLARE_MMIO, l->vm.handle, LOOP_MMIO >> PAGE_SHIFT, 1, 0, 0).status)
		return -EIO;
	if (kc(KC_HOST_VCPU_SET_REG, l->vm.handle, 0, KC_REG_PC, LOOP_IPA, 0).status)
		return -EIO;
	/* EL1h, DAIF masked. */
	if (kc(KC_HOST_VCPU_SET_REG, l->vm.handle, 0, KC_REG_PSTATE, 0x3c5, 0).status)
		return -EIO;
	if (kc(KC_HOST_VCPU_SET_REG, l->vm.handle, 0, KR_X(1), LOOP_MMIO, 0).status)
		return -EIO;
	for (n = 7; n <= 30; n++)
		if (kc(KC_HOST_VCPU_SET_REG, l->vm.handle, 0, KR_X(n), KR_SEED(n), 0).status)
			return -EIO;
	return 0;
}

static void run_clear(u64 *run)
{
	memset(run, 0, PAGE_SIZE);
}

/*
 * Runs the loop VM's vCPU to its next exit that is not a host interrupt (a
 * physical interrupt ends a run wherever the guest is; it is not the exit
 * the attack waits for). Returns KCore's status.
 */
static s64 loop_run(struct loop_vm *l)
{
	unsigned int i;
	s64 st = KC_SUCCESS;

	for (i = 0; i < 1000; i++) {
		st = kc(KC_HOST_VCPU_RUN, l->vm.handle, 0, l->run_pfn, 0, 0).status;
		if (st != KC_SUCCESS || l->run[KC_RUN_EXIT_REASON] != KC_EXIT_IRQ)
			break;
	}
	return st;
}

/* ---- kthreads that touch pages KServ gave away --------------------------- */

struct toucher {
	struct completion done;
	volatile u64 *addr;
	u64 value;
	bool write;
};

static int toucher_fn(void *data)
{
	struct toucher *t = data;

	/* KCore answers with a synchronous external abort: the Oops kills us. */
	if (t->write)
		WRITE_ONCE(*t->addr, t->value);
	else
		t->value = READ_ONCE(*t->addr);
	kthread_complete_and_exit(&t->done, 0);
}

static bool pinned;

/*
 * Touches `addr` from a new kthread: writes *value, or reads into *value.
 * Returns 1 when the kthread died without finishing (the access faulted), 0
 * when it finished, -1 when it neither finished nor died in 10 s.
 */
static int touch(volatile u64 *addr, bool write, const char *name, u64 *value)
{
	unsigned long deadline = jiffies + 10 * HZ;
	struct task_struct *task;
	struct toucher *t;
	int result;

	t = kzalloc(sizeof(*t), GFP_KERNEL);
	if (!t)
		return -1;
	init_completion(&t->done);
	t->addr = addr;
	t->write = write;
	t->value = *value;
	task = kthread_create(toucher_fn, t, "%s", name);
	if (IS_ERR(task)) {
		kfree(t);
		return -1;
	}
	get_task_struct(task);
	pr_info("kthread %s %s %px (an abort Oops is expected)\n", name,
		write ? "writes" : "reads", addr);
	wake_up_process(task);
	for (;;) {
		if (wait_for_completion_timeout(&t->done, msecs_to_jiffies(20))) {
			result = 0;
			break;
		}
		if (READ_ONCE(task->flags) & PF_EXITING) {
			smp_rmb();
			result = completion_done(&t->done) ? 0 : 1;
			break;
		}
		if (time_after(jiffies, deadline)) {
			result = -1;
			break;
		}
	}
	put_task_struct(task);
	if (result == 0) {
		*value = t->value;
		kfree(t);
	} else if (!pinned) {
		/* A kthread that ran module code died or still runs: never unload. */
		__module_get(THIS_MODULE);
		pinned = true;
	}
	return result;
}

static bool expect_fault_v(volatile u64 *addr, bool write, const char *name, u64 value)
{
	int r = touch(addr, write, name, &value);

	if (r == 1) {
		note("%s faulted (kthread %s died); ", write ? "write" : "read", name);
		return true;
	}
	if (r == 0)
		return bad("%s %s completed (read 0x%llx)", name, write ? "write" : "read", value);
	return bad("%s neither finished nor died", name);
}

static bool expect_fault(volatile u64 *addr, bool write, const char *name)
{
	return expect_fault_v(addr, write, name, 0xbad0bad0bad0bad0ULL);
}

static bool kcore_answers(void)
{
	struct kc_ret r = kc(KC_VERSION, 0, 0, 0, 0, 0);

	if (r.status != KC_SUCCESS)
		return bad("KCore's version call returned %lld", r.status);
	note("KCore answers (ABI %llu.%llu)", r.x1 >> 16, r.x1 & 0xffff);
	return true;
}

static bool need_victim(void)
{
	if (vic.found)
		return true;
	return bad("no victim: run scan first (with a protected guest running)");
}

/* ---- scan ---------------------------------------------------------------- */

#define MAX_VMS_SEEN 16
#define MAX_SCAN_RANGES 32

static bool atk_scan(u64 seed)
{
	struct { u64 handle, guest, table, guest_pfn, table_pfn; } seen[MAX_VMS_SEEN] = {};
	struct { u64 first, last; } ranges[MAX_SCAN_RANGES];
	struct device_node *np;
	u64 total = 0, best = 0;
	unsigned int n_seen = 0, n_ranges = 0, i, k;
	struct kc_ret r;

	memset(&vic, 0, sizeof(vic));
	vic.ram_first = U64_MAX;
	for_each_node_by_type(np, "memory") {
		struct resource res;
		int idx;

		for (idx = 0; !of_address_to_resource(np, idx, &res) && n_ranges < MAX_SCAN_RANGES;
		     idx++) {
			ranges[n_ranges].first = PFN_UP(res.start);
			ranges[n_ranges++].last = PFN_DOWN(res.end + 1);
		}
	}
	/*
	 * An ACPI boot has no memory nodes: the span of the top-level System
	 * RAM resources (from the EFI map), holes included (KCore's memory is
	 * a nomap hole in it). walk_system_ram_range is not exported; the
	 * resource tree no longer changes once the suite runs.
	 */
	if (!n_ranges) {
		u64 span[2] = { U64_MAX, 0 };
		struct resource *p;

		for (p = iomem_resource.child; p; p = p->sibling) {
			if ((p->flags & IORESOURCE_SYSTEM_RAM) != IORESOURCE_SYSTEM_RAM)
				continue;
			span[0] = min_t(u64, span[0], PFN_UP(p->start));
			span[1] = max_t(u64, span[1], PFN_DOWN(p->end + 1));
		}
		if (span[0] < span[1]) {
			ranges[0].first = span[0];
			ranges[0].last = span[1];
			n_ranges = 1;
		}
	}
	for (k = 0; k < n_ranges; k++) {
		{
			u64 pfn, first = ranges[k].first, last = ranges[k].last;

			vic.ram_first = min(vic.ram_first, first);
			vic.ram_last = max(vic.ram_last, last - 1);
			for (pfn = first; pfn < last; pfn++) {
				total++;
				r = kc(KC_HOST_PAGE_OWNER, pfn, 0, 0, 0, 0);
				if (r.status != KC_SUCCESS)
					continue;
				if (r.x1 == KC_OWNER_KCORE) {
					if (!vic.kcore_pages++)
						vic.kcore_pfn = pfn;
					continue;
				}
				if (r.x1 != KC_OWNER_GUEST && r.x1 != KC_OWNER_VM_TABLE)
					continue;
				for (i = 0; i < n_seen && seen[i].handle != r.x2; i++)
					;
				if (i == n_seen) {
					if (n_seen == MAX_VMS_SEEN)
						continue;
					seen[n_seen++].handle = r.x2;
				}
				if (r.x1 == KC_OWNER_GUEST) {
					/* A page from the middle of its memory. */
					if (seen[i].guest++ % 64 == 32)
						seen[i].guest_pfn = pfn;
				} else if (!seen[i].table++) {
					seen[i].table_pfn = pfn;
				}
			}
			cond_resched();
		}
	}
	for (i = 0; i < n_seen; i++) {
		if (seen[i].guest <= best || !seen[i].guest_pfn || !seen[i].table_pfn)
			continue;
		best = seen[i].guest;
		vic.handle = seen[i].handle;
		vic.guest_pages = seen[i].guest;
		vic.table_pages = seen[i].table;
		vic.guest_pfn = seen[i].guest_pfn;
		vic.table_pfn = seen[i].table_pfn;
	}
	note("%llu pages asked; %llu KCore pages from pfn 0x%llx; %u live VMs; ", total,
	     vic.kcore_pages, vic.kcore_pfn, n_seen);
	if (!best || !vic.kcore_pages)
		return bad("no VM with private memory, or no KCore page");
	/* A protected vCPU's registers are Denied (Busy while it runs). */
	for (i = 0; i < 8; i++) {
		r = kc(KC_HOST_VCPU_GET_REG, vic.handle, i, KC_REG_PC, 0, 0);
		if (r.status == KC_SUCCESS)
			return bad("vCPU %u of VM 0x%llx gave its PC: not a protected VM", i, vic.handle);
		if (r.status != KC_ERR_DENIED && r.status != KC_ERR_BUSY)
			break;
		vic.vcpus = i + 1;
	}
	if (!vic.vcpus)
		return bad("VM 0x%llx has no vCPU", vic.handle);
	vic.found = true;
	note("victim VM 0x%llx: %llu private pages, %llu table pages, %u vCPUs", vic.handle,
	     vic.guest_pages, vic.table_pages, vic.vcpus);
	return true;
}

/* ---- memory attacks on the victim ---------------------------------------- */

static bool atk_linear(bool write)
{
	bool ok;

	if (!need_victim())
		return false;
	note("pfn 0x%llx: ", vic.guest_pfn);
	ok = expect_fault(page_address(pfn_to_page(vic.guest_pfn)), write,
			  write ? "atk-linwrite" : "atk-linread");
	return kcore_answers() && ok;
}

static bool atk_linear_read(u64 seed) { return atk_linear(false); }
static bool atk_linear_write(u64 seed) { return atk_linear(true); }

/* A fresh kernel mapping (vmap) of the victim's page, then a read and a write. */
static bool atk_vmap(u64 seed)
{
	struct page *p;
	void *va;
	bool ok;

	if (!need_victim())
		return false;
	p = pfn_to_page(vic.guest_pfn);
	va = vmap(&p, 1, VM_MAP, PAGE_KERNEL);
	if (!va)
		return bad("vmap failed");
	note("pfn 0x%llx at %px: ", vic.guest_pfn, va);
	ok = expect_fault(va, false, "atk-vmapread");
	ok = expect_fault(va, true, "atk-vmapwrite") && ok;
	/* Left mapped: a dead kthread may still have it in hand. */
	return kcore_answers() && ok;
}

/* KCore's own memory, through a fresh mapping. */
static bool atk_kcore_map(u64 seed)
{
	void *va;
	bool ok;

	if (!need_victim())
		return false;
	va = memremap(PFN_PHYS(vic.kcore_pfn), PAGE_SIZE, MEMREMAP_WB);
	if (!va)
		return bad("memremap of pfn 0x%llx failed", vic.kcore_pfn);
	note("KCore pfn 0x%llx at %px: ", vic.kcore_pfn, va);
	ok = expect_fault(va, false, "atk-kcoreread");
	ok = expect_fault(va, true, "atk-kcorewrite") && ok;
	return kcore_answers() && ok;
}

/* ---- the GIC's memory tables ---------------------------------------------- */

/* QEMU virt's GICv3 distributor and ITS (hw/arm/virt.c's memory map). */
#define VIRT_GICD	0x08000000ULL
#define VIRT_ITS	0x08080000ULL

/*
 * On an ACPI boot KServ's tree is a /chosen stub: the GICv3's distributor
 * (index 0) and first redistributor region (index 1) come from KServ's
 * MADT. Its MADT has no ITS (kcore.efi leaves KCore's ITSes out), so the
 * ITS is QEMU virt's fixed address, taken only when the MADT's distributor
 * is virt's: a clearly labelled fallback for the one machine the suite runs
 * on with ACPI.
 */
static bool acpi_gic_region(const char *compatible, int index, struct resource *res)
{
#ifdef CONFIG_ACPI
	struct acpi_table_header *hdr;
	u64 gicd = 0, gicr = 0, gicr_len = 0;
	u8 *p, *end;

	if (acpi_disabled || ACPI_FAILURE(acpi_get_table(ACPI_SIG_MADT, 0, &hdr)))
		return false;
	p = (u8 *)hdr + sizeof(struct acpi_table_madt);
	end = (u8 *)hdr + hdr->length;
	while (p + sizeof(struct acpi_subtable_header) <= end) {
		struct acpi_subtable_header *e = (void *)p;

		if (e->length < sizeof(*e) || p + e->length > end)
			break;
		if (e->type == ACPI_MADT_TYPE_GENERIC_DISTRIBUTOR && !gicd &&
		    e->length >= sizeof(struct acpi_madt_generic_distributor))
			gicd = ((struct acpi_madt_generic_distributor *)e)->base_address;
		if (e->type == ACPI_MADT_TYPE_GENERIC_REDISTRIBUTOR && !gicr &&
		    e->length >= sizeof(struct acpi_madt_generic_redistributor)) {
			gicr = ((struct acpi_madt_generic_redistributor *)e)->base_address;
			gicr_len = ((struct acpi_madt_generic_redistributor *)e)->length;
		}
		p += e->length;
	}
	acpi_put_table(hdr);
	if (!strcmp(compatible, "arm,gic-v3") && index == 0 && gicd) {
		*res = (struct resource)DEFINE_RES_MEM(gicd, SZ_64K);
		return true;
	}
	if (!strcmp(compatible, "arm,gic-v3") && index == 1 && gicr) {
		*res = (struct resource)DEFINE_RES_MEM(gicr, gicr_len);
		return true;
	}
	if (!strcmp(compatible, "arm,gic-v3-its") && gicd == VIRT_GICD) {
		note("ITS at QEMU virt's fixed address (KServ's MADT lists none): ");
		*res = (struct resource)DEFINE_RES_MEM(VIRT_ITS, SZ_128K);
		return true;
	}
#endif
	return false;
}

/* The GICv3 node's register region `index` (0 the distributor, 1 the first
 * redistributor region), or an ITS node's: from KServ's device tree, or on
 * an ACPI boot from its MADT (not available to KServ's drivers as a node). */
static bool gic_region(const char *compatible, int index, struct resource *res, bool *available)
{
	struct device_node *np = of_find_compatible_node(NULL, NULL, compatible);
	int err;

	if (!np) {
		*available = false;
		return acpi_gic_region(compatible, index, res);
	}
	*available = of_device_is_available(np);
	err = of_address_to_resource(np, index, res);
	of_node_put(np);
	return !err;
}

/*
 * The ITS writes its device table, collection table and every ITT a MAPD
 * command names by physical address, outside any stage 2. Pointing
 * GITS_BASER0 at KCore's memory or at a protected VM's page and queueing MAPD
 * commands whose table entries spell "KServ's page" relabelled every page of
 * a victim once. KCore keeps the ITS: KServ's tree shows it disabled and
 * every access to its control frame faults.
 */
static bool atk_its(u64 seed)
{
	struct resource res;
	bool available, ok = true;
	/* Valid, device table, 8-byte entries, the page's address. */
	const u64 baser = 1ULL << 63 | 1ULL << 56 | 7ULL << 48;
	void __iomem *its;

	if (!need_victim())
		return false;
	if (!gic_region("arm,gic-v3-its", 0, &res, &available))
		return bad("KServ's device tree has no ITS node to aim at");
	if (available)
		ok = bad("the ITS at %pa is available to KServ", &res.start);
	else
		note("the ITS at %pa is disabled in KServ's tree; ", &res.start);
	its = ioremap(res.start, SZ_64K);
	if (!its)
		return bad("ioremap of the ITS failed");
	ok = expect_fault_v(its + 0x100, true, "atk-its-baser-kcore",
			    baser | PFN_PHYS(vic.kcore_pfn)) && ok;
	ok = expect_fault_v(its + 0x100, true, "atk-its-baser-victim",
			    baser | PFN_PHYS(vic.guest_pfn)) && ok;
	ok = expect_fault(its + 0x80, true, "atk-its-cbaser") && ok;
	ok = expect_fault(its + 0x0, false, "atk-its-ctlr") && ok;
	iounmap(its);
	return kcore_answers() && ok;
}

/*
 * A redistributor reads and writes its LPI property and pending tables by
 * physical address. KServ's writes of GICR_PROPBASER and GICR_PENDBASER (with
 * a protected VM's page and KCore's) must not take, GICR_CTLR.EnableLPIs must
 * stay clear, and the redistributor must keep working for everything else.
 */
static bool atk_gicr(u64 seed)
{
	struct resource res;
	bool available, ok = true;
	void __iomem *rd;
	u64 typer, prop, pend;
	u32 ctlr, ctlr_after, waker;

	if (!need_victim())
		return false;
	if (!gic_region("arm,gic-v3", 1, &res, &available))
		return bad("KServ's device tree has no GICv3 redistributor region");
	rd = ioremap(res.start, SZ_128K);
	if (!rd)
		return bad("ioremap of the redistributors failed");
	typer = readq(rd + 0x8);
	waker = readl(rd + 0x14);
	writeq(PFN_PHYS(vic.guest_pfn) | 0x7, rd + 0x70);
	writeq(PFN_PHYS(vic.kcore_pfn), rd + 0x78);
	prop = readq(rd + 0x70);
	pend = readq(rd + 0x78);
	ctlr = readl(rd + 0x0);
	writel(ctlr | 1, rd + 0x0);
	ctlr_after = readl(rd + 0x0);
	writel(ctlr, rd + 0x0);
	iounmap(rd);
	note("redistributor at %pa: TYPER 0x%llx, WAKER 0x%x; PROPBASER reads 0x%llx, PENDBASER 0x%llx; "
	     "CTLR 0x%x, after setting EnableLPIs 0x%x; ", &res.start, typer, waker, prop, pend, ctlr,
	     ctlr_after);
	if (prop || pend)
		ok = bad("an LPI table base took KServ's write");
	if (ctlr_after & 1)
		ok = bad("EnableLPIs took KServ's write");
	if (!typer)
		ok = bad("GICR_TYPER read as 0: the redistributor does not answer");
	return kcore_answers() && ok;
}

/*
 * A GICv2 host's virtual interface control (GICH) holds the running vCPU's
 * list registers, and its virtual CPU interface (GICV) is the running vCPU's
 * own CPU interface. Both are KCore's: KServ's tree still names them (reg
 * entries 2 and 3 of the GIC node), but they are never in KServ's stage 2,
 * so a fresh mapping of either faults on read and on write.
 */
static bool gicv2_frame(int index, const char *what, const char *read_name,
			const char *write_name, unsigned long read_off, unsigned long write_off)
{
	static const char *const compatibles[] = { "arm,cortex-a15-gic", "arm,gic-400" };
	struct resource res;
	bool available, found = false, ok = true;
	void __iomem *frame;
	unsigned int i;

	if (!need_victim())
		return false;
	for (i = 0; i < ARRAY_SIZE(compatibles) && !found; i++)
		found = gic_region(compatibles[i], index, &res, &available);
	if (!found)
		return bad("KServ's device tree names no GICv2 %s frame (reg %d)", what, index);
	frame = ioremap(res.start, SZ_4K);
	if (!frame)
		return bad("ioremap of the %s at %pa failed", what, &res.start);
	note("%s at %pa: ", what, &res.start);
	ok = expect_fault(frame + read_off, false, read_name) && ok;
	ok = expect_fault(frame + write_off, true, write_name) && ok;
	iounmap(frame);
	return kcore_answers() && ok;
}

/* GICH: GICH_HCR read, GICH_LR0 written (a forged interrupt for the vCPU). */
static bool atk_gich(u64 seed)
{
	return gicv2_frame(2, "GICH", "atk-gich-hcr", "atk-gich-lr0", 0x0, 0x100);
}

/* GICV: GICV_CTLR read, GICV_PMR written. */
static bool atk_gicv(u64 seed)
{
	return gicv2_frame(3, "GICV", "atk-gicv-ctlr", "atk-gicv-pmr", 0x0, 0x4);
}

/*
 * KServ's SMCs outside PSCI go through KCore's allow-list (docs/abi.md, "SMC:
 * the firmware calls KServ may make"). SDEI above all must never reach the
 * firmware, which would enter a KServ-chosen address at EL2 on an event:
 * SDEI_EVENT_REGISTER is offered this module's own code as the entry point.
 * Every refused call must answer NOT_SUPPORTED with x1..x3 as KServ set
 * them; the allow-listed SMCCC and TRNG calls must come back (with what the
 * firmware says: QEMU's PSCI firmware refuses them, TF-A answers) with
 * x1..x3 untouched where the call returns only x0, and KCore must keep
 * serving. QEMU's firmware would refuse SDEI too, so that KCore itself
 * never passes it on is shown by the dispatcher fuzzer, which checks every
 * call KCore makes to its firmware double.
 */
static bool atk_smc(u64 seed)
{
	static const struct {
		unsigned long fid;
		const char *name;
		bool allowed;
	} calls[] = {
		{ 0x84000020, "SDEI_VERSION", false },
		{ 0xC4000021, "SDEI_EVENT_REGISTER", false },
		{ 0x84000022, "SDEI_EVENT_ENABLE", false },
		{ 0x8400002C, "SDEI_PE_UNMASK", false },
		{ 0xC4000030, "SDEI_SHARED_RESET", false },
		{ 0x80000002, "SMCCC_ARCH_SOC_ID", false },
		{ 0xC2000001, "a SiP call", false },
		{ 0x83000000, "an OEM call", false },
		{ 0xB2000000, "a Trusted OS call", false },
		{ 0x1C4000021, "SDEI_EVENT_REGISTER with bit 32 set", false },
		{ 0x80000000, "SMCCC_VERSION", true },
		{ 0x80008000, "SMCCC_ARCH_WORKAROUND_1", true },
		{ 0x80003FFF, "SMCCC_ARCH_WORKAROUND_3", true },
		{ 0x84000050, "TRNG_VERSION", true },
	};
	unsigned long entry = (unsigned long)atk_smc;
	struct arm_smccc_res res;
	unsigned int i, refused = 0, answered = 0;
	bool ok = true;

	for (i = 0; i < ARRAY_SIZE(calls); i++) {
		/* x1 = event 0, x2 = entry point, x3 = its argument. */
		unsigned long a1 = 0, a2 = entry, a3 = seed;

		arm_smccc_smc(calls[i].fid, a1, a2, a3, 0, 0, 0, 0, &res);
		if (res.a1 != a1 || res.a2 != a2 || res.a3 != a3)
			ok = bad("%s changed x1..x3 to 0x%lx 0x%lx 0x%lx", calls[i].name, res.a1,
				 res.a2, res.a3);
		if (calls[i].allowed) {
			note("%s answered 0x%lx; ", calls[i].name, res.a0);
			answered++;
		} else if (res.a0 != (unsigned long)SMCCC_RET_NOT_SUPPORTED) {
			ok = bad("%s answered 0x%lx, not NOT_SUPPORTED", calls[i].name, res.a0);
		} else {
			refused++;
		}
	}
	/* Feature queries: only the workarounds', and TRNG_RND with a count. */
	arm_smccc_smc(0x80000001, 0x84000021, 0, 0, 0, 0, 0, 0, &res);
	if (res.a0 != (unsigned long)SMCCC_RET_NOT_SUPPORTED)
		ok = bad("SMCCC_ARCH_FEATURES(SDEI_EVENT_REGISTER) answered 0x%lx", res.a0);
	else
		refused++;
	arm_smccc_smc(0x80000001, 0x80008000, 0, 0, 0, 0, 0, 0, &res);
	note("SMCCC_ARCH_FEATURES(WORKAROUND_1) answered 0x%lx; ", res.a0);
	arm_smccc_smc(0xC4000053, 64, 0, 0, 0, 0, 0, 0, &res);
	note("TRNG_RND64(64) answered 0x%lx; ", res.a0);
	answered += 2;
	note("%u calls refused with NOT_SUPPORTED (SDEI, SiP, OEM, Trusted OS, SOC_ID), %u "
	     "allow-listed calls answered; ", refused, answered);
	return kcore_answers() && ok;
}

/*
 * On an ACPI boot (kcore.efi in ACPI mode) KServ's tree is a /chosen stub;
 * the devices KCore keeps are in KServ's DSDT under the IDs kcore.efi
 * renamed them to (KCOR0002 for fw_cfg, KCOR0005 for virtio-mmio,
 * KCR0C02 for the ECAM's reservation): their first memory resource.
 */
static bool acpi_region(const char *hid, struct resource *res)
{
#ifdef CONFIG_ACPI
	struct acpi_device *adev;
	struct resource_entry *e;
	LIST_HEAD(list);
	bool found = false;

	if (acpi_disabled || !hid)
		return false;
	adev = acpi_dev_get_first_match_dev(hid, NULL, -1);
	if (!adev)
		return false;
	if (acpi_dev_get_resources(adev, &list, NULL, NULL) > 0) {
		resource_list_for_each_entry(e, &list) {
			if (resource_type(e->res) == IORESOURCE_MEM) {
				*res = *e->res;
				found = true;
				break;
			}
		}
	}
	acpi_dev_free_resource_list(&list);
	acpi_dev_put(adev);
	return found;
#else
	return false;
#endif
}

/*
 * Devices that read and write memory by physical address with no SMMU in
 * between are KCore's: fw_cfg's DMA interface, the PCIe host bridge (its
 * config space makes any device a bus master; QEMU's virt has a virtio-net
 * NIC there) and the virtio-mmio transports. KServ's tree shows them
 * disabled (on an ACPI boot, KServ's DSDT renames them), and touching them
 * faults. On ACPI, fw_cfg and a transport must be found.
 */
static bool atk_dma_masters(u64 seed)
{
	static const struct {
		const char *compatible, *acpi_hid, *what;
		unsigned long offset;
		bool write, needed_on_acpi;
	} dev[] = {
		/* FW_CFG_DMA: the address of a DMA descriptor, big-endian. */
		{ "qemu,fw-cfg-mmio", "KCOR0002", "fw_cfg DMA address", 0x10, true, true },
		/* Device 0's vendor and device id in config space. */
		{ "pci-host-ecam-generic", "KCR0C02", "PCIe config space", 0x0, false, false },
		/* A transport's magic value. */
		{ "virtio,mmio", "KCOR0005", "virtio-mmio transport", 0x0, false, true },
	};
	bool ok = true;
	unsigned int i;

	if (!need_victim())
		return false;
	for (i = 0; i < ARRAY_SIZE(dev); i++) {
		struct resource res;
		bool available;
		void __iomem *va;
		char name[32];

		if (gic_region(dev[i].compatible, 0, &res, &available)) {
			if (available)
				ok = bad("the %s at %pa is available to KServ", dev[i].what,
					 &res.start);
			else
				note("%s at %pa disabled in KServ's tree: ", dev[i].what,
				     &res.start);
		} else if (acpi_region(dev[i].acpi_hid, &res)) {
			note("%s at %pa renamed %s in KServ's DSDT: ", dev[i].what, &res.start,
			     dev[i].acpi_hid);
		} else if (!acpi_disabled && dev[i].needed_on_acpi) {
			ok = bad("no %s in KServ's DSDT (%s)", dev[i].what, dev[i].acpi_hid);
			continue;
		} else {
			note("no %s in KServ's tree or DSDT; ", dev[i].what);
			continue;
		}
		va = ioremap(res.start, PAGE_SIZE);
		if (!va) {
			ok = bad("ioremap of the %s failed", dev[i].what);
			continue;
		}
		snprintf(name, sizeof(name), "atk-dma-%u", i);
		ok = expect_fault_v(va + dev[i].offset, dev[i].write, name,
				    cpu_to_be64(PFN_PHYS(vic.kcore_pfn))) && ok;
		iounmap(va);
	}
	return kcore_answers() && ok;
}

/* ---- MMIO only where the guest's signer allowed ---------------------------- */

#define TG_IMAGE	"/lib/kserv/test-guest.img"
#define TG_RAM_GFN	0x40000ULL	/* the test guest's RAM, at 1 GiB */
#define TG_DEVICE_GFN	0x9000ULL	/* inside its signed manifest (the low 1 GiB) */

static ssize_t read_file(const char *path, void **buf, size_t max)
{
	size_t size = 0;

	*buf = NULL;
	return kernel_read_file_from_path(path, 0, buf, max, &size, READING_UNKNOWN);
}

/*
 * A protected VM's accesses to a page KServ declared MMIO leave the VM as
 * exits carrying their data. KServ once declared the guest's RAM after its
 * image MMIO and read its stores. Now the image's signature block carries
 * the MMIO ranges its signer allows: on a fresh protected VM with the signed
 * test guest, declaring MMIO before verification, over the guest's RAM or
 * image, or wider than the manifest is Denied; narrowing is allowed; and no
 * page can be donated where devices are.
 */
/*
 * A fresh protected VM (vCPUs 0 and 1) holding the signed test guest at
 * TG_RAM_GFN, its signature block in a page of ours: *sig_pfn. Returns the
 * image's length in bytes, or 0 (noted) when that cannot be done.
 */
static ssize_t tg_protected_vm(struct sac_vm *vm, u64 *sig_pfn)
{
	void *img = NULL, *sig = NULL;
	ssize_t img_len, sig_len, ret = 0;
	u64 pages, i, pfn;

	img_len = read_file(TG_IMAGE, &img, 16 * PAGE_SIZE);
	sig_len = read_file(TG_IMAGE ".sig", &sig, PAGE_SIZE);
	if (img_len <= 0 || sig_len <= 0) {
		bad("cannot read %s and its signature block (%zd, %zd)", TG_IMAGE, img_len, sig_len);
		goto out;
	}
	pages = DIV_ROUND_UP(img_len, PAGE_SIZE);
	if (sac_create(vm, true, 5) || kc(KC_HOST_CREATE_VCPU, vm->handle, 1, 0, 0, 0).status != KC_SUCCESS) {
		bad("cannot make the sacrificial protected VM");
		goto out;
	}
	for (i = 0; i < pages; i++) {
		size_t n = min_t(size_t, PAGE_SIZE, img_len - i * PAGE_SIZE);
		void *va;

		pfn = take_pfn();
		if (!pfn)
			break;
		va = kmap_local_page(pfn_to_page(pfn));
		memcpy(va, img + i * PAGE_SIZE, n);
		kunmap_local(va);
		if (kc(KC_HOST_DONATE_GUEST, vm->handle, pfn, TG_RAM_GFN + i, 0, 0).status != KC_SUCCESS)
			break;
	}
	*sig_pfn = take_pfn();
	if (i < pages || !*sig_pfn) {
		bad("cannot donate the image");
		goto out;
	}
	memcpy(page_address(pfn_to_page(*sig_pfn)), sig, sig_len);
	ret = img_len;
out:
	vfree(img);
	vfree(sig);
	return ret;
}

static bool atk_mmio_consent(u64 seed)
{
	struct sac_vm vm;
	u64 pages, sig_pfn = 0, pfn;
	ssize_t img_len;
	bool ok = true;
	s64 s;

	img_len = tg_protected_vm(&vm, &sig_pfn);
	if (!img_len) {
		settle();
		return false;
	}
	pages = DIV_ROUND_UP(img_len, PAGE_SIZE);
	s = kc(KC_HOST_DECLARE_MMIO, vm.handle, TG_DEVICE_GFN, 1, 0, 0).status;
	ok = refused("declaring MMIO before verification", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_VERIFY_IMAGE, vm.handle, TG_RAM_GFN, img_len, sig_pfn, 0).status;
	if (s != KC_SUCCESS) {
		ok = bad("the signed test guest did not verify: %lld", s);
		return settle() && ok;
	}
	note("%llu image pages verified; ", pages);
	/* The RAM right after the image, the image, wider than the manifest. */
	s = kc(KC_HOST_DECLARE_MMIO, vm.handle, TG_RAM_GFN + pages, 1, 0, 0).status;
	ok = refused("declaring the RAM after the image MMIO", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_DECLARE_MMIO, vm.handle, TG_RAM_GFN, 1, 0, 0).status;
	ok = refused("declaring the image MMIO", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_DECLARE_MMIO, vm.handle, TG_RAM_GFN - 1, 2, 0, 0).status;
	ok = refused("declaring past the manifest", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	/* Narrowing is KServ's choice. */
	s = kc(KC_HOST_DECLARE_MMIO, vm.handle, TG_DEVICE_GFN, 1, 0, 0).status;
	if (s != KC_SUCCESS)
		ok = bad("declaring a device page inside the manifest: %lld", s);
	/* No memory where devices are, declared or merely allowed. */
	pfn = take_pfn();
	s = kc(KC_HOST_DONATE_GUEST, vm.handle, pfn, TG_DEVICE_GFN, 0, 0).status;
	ok = refused("donating into declared MMIO", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_DONATE_GUEST, vm.handle, pfn, TG_DEVICE_GFN + 1, 0, 0).status;
	ok = refused("donating inside the manifest", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	if (ok)
		note("MMIO before verification, over RAM, over the image and past the manifest: "
		     "Denied; a device page inside: declared; donations there: Denied; ");
	return settle() && ok;
}

/*
 * A protected VM's ITS tables are read through KCore (HostReadGicTable),
 * only inside the windows its guest itself programmed into its ITS and
 * redistributor registers, as KCore recorded them from the guest's exits.
 * KServ only names the frames, before the first run, inside the VM's MMIO
 * ranges: it cannot open a window. On a fresh verified protected VM with
 * its ITS placed (no guest ran), reading its image is Denied, and so are a
 * second ITS and a frame outside its MMIO ranges; on the running victim
 * (no ITS), placing one is Denied and reading its private page too. A
 * GICv2 host has no such frames (NotSupported).
 */
#define TG_ITS_GFN	0x8080ULL	/* QEMU virt's ITS frame, inside the manifest */

static bool atk_gic_table(u64 seed)
{
	struct sac_vm vm;
	u64 sig_pfn = 0, gfn;
	ssize_t img_len;
	bool ok = true, v2;
	struct kc_ret r;
	s64 s;

	if (!need_victim())
		return false;
	r = kc(KC_HOST_PAGE_OWNER, vic.guest_pfn, 0, 0, 0, 0);
	if (r.status != KC_SUCCESS || r.x1 != KC_OWNER_GUEST || r.x2 != vic.handle)
		return bad("the victim's page %#llx is no longer its own", vic.guest_pfn);
	gfn = r.x3;
	s = kc(KC_HOST_READ_GIC_TABLE, vic.handle, gfn << PAGE_SHIFT, 8, 0, 0).status;
	ok = refused("reading the victim's private page", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_SET_GIC_FRAMES, vic.handle, KC_GIC_FRAME_ITS, TG_ITS_GFN, 1, 0).status;
	v2 = s == KC_ERR_NOT_SUPPORTED;
	ok = refused("placing an ITS in the running victim", s, KC_ERR_DENIED, KC_ERR_NOT_SUPPORTED) && ok;

	img_len = tg_protected_vm(&vm, &sig_pfn);
	if (!img_len) {
		settle();
		return false;
	}
	s = kc(KC_HOST_VERIFY_IMAGE, vm.handle, TG_RAM_GFN, img_len, sig_pfn, 0).status;
	if (s != KC_SUCCESS) {
		ok = bad("the signed test guest did not verify: %lld", s);
		return settle() && ok;
	}
	s = kc(KC_HOST_SET_GIC_FRAMES, vm.handle, KC_GIC_FRAME_ITS, TG_ITS_GFN, 1, 0).status;
	ok = refused("placing the ITS before its MMIO is declared", s, KC_ERR_DENIED,
		     KC_ERR_NOT_SUPPORTED) && ok;
	s = kc(KC_HOST_DECLARE_MMIO, vm.handle, TG_ITS_GFN, 32, 0, 0).status;
	if (s != KC_SUCCESS)
		ok = bad("declaring the ITS frame MMIO: %lld", s);
	s = kc(KC_HOST_SET_GIC_FRAMES, vm.handle, KC_GIC_FRAME_ITS, TG_ITS_GFN, 1, 0).status;
	if (s != (v2 ? KC_ERR_NOT_SUPPORTED : KC_SUCCESS))
		ok = bad("placing the ITS inside the VM's MMIO: %lld", s);
	s = kc(KC_HOST_SET_GIC_FRAMES, vm.handle, KC_GIC_FRAME_ITS, TG_ITS_GFN + 64, 1, 0).status;
	ok = refused("placing a second ITS", s, KC_ERR_DENIED, KC_ERR_NOT_SUPPORTED) && ok;
	s = kc(KC_HOST_SET_GIC_FRAMES, vm.handle, KC_GIC_FRAME_REDIST, TG_RAM_GFN, 1, 0).status;
	ok = refused("placing redistributors over the image", s, KC_ERR_DENIED,
		     KC_ERR_NOT_SUPPORTED) && ok;
	for (gfn = TG_RAM_GFN; gfn < TG_RAM_GFN + 2; gfn++) {
		s = kc(KC_HOST_READ_GIC_TABLE, vm.handle, gfn << PAGE_SHIFT, KC_GIC_FRAME_MAX_READ,
		       0, 0).status;
		ok = refused("reading the image through the ITS path", s, KC_ERR_DENIED,
			     KC_ERR_DENIED) && ok;
	}
	if (ok)
		note("%s; the victim's private page and a fresh VM's image: Denied; ",
		     v2 ? "a GICv2 host: no ITS frames (NotSupported)" :
		     "an ITS placed in a fresh VM's MMIO, not outside it, not twice, not once it ran");
	return settle() && ok;
}

/*
 * A protected VM's secondary vCPUs start only through the guest's own PSCI
 * CPU_ON, at the entry and context id it gives: KServ once set vCPU 1's PC
 * inside the image and ran it. On a verified protected VM, setting vCPU 1's
 * PC or x0 and running it before any CPU_ON are Denied; vCPU 0 still takes
 * its first PC inside the image.
 */
static bool atk_secondary(u64 seed)
{
	struct sac_vm vm;
	u64 sig_pfn = 0, run_pfn;
	ssize_t img_len;
	bool ok = true;
	s64 s;

	img_len = tg_protected_vm(&vm, &sig_pfn);
	if (!img_len) {
		settle();
		return false;
	}
	s = kc(KC_HOST_VERIFY_IMAGE, vm.handle, TG_RAM_GFN, img_len, sig_pfn, 0).status;
	if (s != KC_SUCCESS) {
		ok = bad("the signed test guest did not verify: %lld", s);
		return settle() && ok;
	}
	s = kc(KC_HOST_VCPU_SET_REG, vm.handle, 1, KC_REG_PC, (TG_RAM_GFN << PAGE_SHIFT) + 12, 0).status;
	ok = refused("setting vCPU 1's PC inside the image", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_VCPU_SET_REG, vm.handle, 1, KR_X(0), 0x5ec0, 0).status;
	ok = refused("setting vCPU 1's x0", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	run_pfn = take_pfn();
	s = kc(KC_HOST_VCPU_RUN, vm.handle, 1, run_pfn, 0, 0).status;
	ok = refused("running vCPU 1 before the guest's CPU_ON", s, KC_ERR_DENIED, KC_ERR_DENIED) && ok;
	s = kc(KC_HOST_VCPU_SET_REG, vm.handle, 0, KC_REG_PC, TG_RAM_GFN << PAGE_SHIFT, 0).status;
	if (s != KC_SUCCESS)
		ok = bad("setting vCPU 0's first PC at the image's entry: %lld", s);
	if (ok)
		note("vCPU 1's PC and x0 and a run of it before CPU_ON: Denied; vCPU 0's first PC "
		     "in the image: taken; ");
	return settle() && ok;
}

/* ---- ownership attacks ---------------------------------------------------- */

/* Someone else's pages (KCore's, the victim's, its tables) given as our own. */
static bool atk_donate_foreign(u64 seed)
{
	const struct { const char *name; u64 pfn; } foreign[] = {
		{ "KCore", vic.kcore_pfn },
		{ "victim's", vic.guest_pfn },
		{ "victim's table", vic.table_pfn },
	};
	struct sac_vm a, p;
	unsigned int i, n = 0;
	bool ok = true;

	if (!need_victim())
		return false;
	if (sac_create(&a, false, 4) || sac_create(&p, true, 4))
		return GIVE_UP("cannot make the sacrificial VMs");
	for (i = 0; i < ARRAY_SIZE(foreign); i++) {
		u64 pfn = foreign[i].pfn;

		ok &= refused("DonateGuest", kc(KC_HOST_DONATE_GUEST, p.handle, pfn, 0x100, 0, 0).status,
			      KC_ERR_DENIED, KC_ERR_DENIED);
		ok &= refused("ShareGuest", kc(KC_HOST_SHARE_GUEST, a.handle, pfn, 0x100, 0, 0).status,
			      KC_ERR_DENIED, KC_ERR_DENIED);
		ok &= refused("DonateVmPool", kc(KC_HOST_DONATE_VM_POOL, a.handle, pfn, 0, 0, 0).status,
			      KC_ERR_DENIED, KC_ERR_DENIED);
		/* A pool of two pages from there (the root needs 8 KiB alignment). */
		ok &= refused("CreateVm", kc(KC_HOST_CREATE_VM, 0, 0, 1, pfn & ~1ULL, 2).status,
			      KC_ERR_DENIED, KC_ERR_DENIED);
		/* And to the victim itself, at another gfn. */
		ok &= refused("DonateGuest to the victim",
			      kc(KC_HOST_DONATE_GUEST, vic.handle, pfn, 0xfff00, 0, 0).status, KC_ERR_DENIED,
			      KC_ERR_BUSY);
		n += 5;
	}
	/* A pfn that is no RAM at all. */
	ok &= refused("DonateGuest of a non-RAM pfn",
		      kc(KC_HOST_DONATE_GUEST, p.handle, vic.ram_last + 1, 0x100, 0, 0).status,
		      KC_ERR_INVALID_PARAMETER, KC_ERR_INVALID_PARAMETER);
	n++;
	note("%u donations of KCore's, the victim's and non-RAM pages refused; ", n);
	return settle() && ok;
}

/* One page to two VMs; one page at two gfns of one VM. */
static bool atk_donate_twice(u64 seed)
{
	struct sac_vm a, b, c;
	u64 pfn;
	s64 s;
	bool ok = true;

	if (sac_create(&a, true, 4) || sac_create(&b, true, 4) || sac_create(&c, false, 4))
		return GIVE_UP("cannot make the sacrificial VMs");
	pfn = take_pfn();
	if (!pfn)
		return GIVE_UP("no page");
	s = kc(KC_HOST_DONATE_GUEST, a.handle, pfn, 0x100, 0, 0).status;
	if (s != KC_SUCCESS)
		return GIVE_UP("the first donation failed: %lld", s);
	ok &= refused("DonateGuest to a second VM", kc(KC_HOST_DONATE_GUEST, b.handle, pfn, 0x100, 0, 0).status,
		      KC_ERR_DENIED, KC_ERR_DENIED);
	ok &= refused("DonateGuest at a second gfn", kc(KC_HOST_DONATE_GUEST, a.handle, pfn, 0x101, 0, 0).status,
		      KC_ERR_DENIED, KC_ERR_DENIED);
	ok &= refused("ShareGuest of a donated page", kc(KC_HOST_SHARE_GUEST, c.handle, pfn, 0x100, 0, 0).status,
		      KC_ERR_DENIED, KC_ERR_DENIED);
	ok &= refused("DonateVmPool of a donated page", kc(KC_HOST_DONATE_VM_POOL, b.handle, pfn, 0, 0, 0).status,
		      KC_ERR_DENIED, KC_ERR_DENIED);
	/* Shared with a non-protected VM at one gfn, then at another. */
	pfn = take_pfn();
	if (!pfn || kc(KC_HOST_SHARE_GUEST, c.handle, pfn, 0x200, 0, 0).status != KC_SUCCESS)
		return GIVE_UP("the first share failed");
	ok &= refused("ShareGuest at a second gfn", kc(KC_HOST_SHARE_GUEST, c.handle, pfn, 0x201, 0, 0).status,
		      KC_ERR_DENIED, KC_ERR_DENIED);
	ok &= refused("DonateGuest of a shared page", kc(KC_HOST_DONATE_GUEST, a.handle, pfn, 0x200, 0, 0).status,
		      KC_ERR_DENIED, KC_ERR_DENIED);
	/* A gfn that is taken, with a fresh page. */
	pfn = take_pfn();
	ok &= refused("DonateGuest at a taken gfn", kc(KC_HOST_DONATE_GUEST, a.handle, pfn, 0x100, 0, 0).status,
		      KC_ERR_BUSY, KC_ERR_DENIED);
	note("second owner, second gfn, share-after-donate, donate-after-share, taken gfn: all refused; ");
	return settle() && ok;
}

/* Share and unshare one page from both CPUs at once, at two gfns. */
#define RACE_ROUNDS 20000
struct racer {
	struct completion done;
	u64 handle, pfn, gfn;
	unsigned int cpu;
	u64 shares, unshares, refusals, undefined;
};

static int racer_fn(void *data)
{
	struct racer *r = data;
	unsigned int i;

	for (i = 0; i < RACE_ROUNDS; i++) {
		s64 s = kc(KC_HOST_SHARE_GUEST, r->handle, r->pfn, r->gfn, 0, 0).status;

		if (s == KC_SUCCESS)
			r->shares++;
		else if (s == KC_ERR_DENIED || s == KC_ERR_BUSY)
			r->refusals++;
		else
			r->undefined++;
		s = kc(KC_HOST_UNSHARE_GUEST, r->handle, r->gfn, 0, 0, 0).status;
		if (s == KC_SUCCESS)
			r->unshares++;
		else if (s == KC_ERR_DENIED || s == KC_ERR_NOT_FOUND)
			r->refusals++;
		else
			r->undefined++;
		if (!(i % 256))
			cond_resched();
	}
	complete(&r->done);
	return 0;
}

static int start_on(int (*fn)(void *), void *data, unsigned int cpu, const char *name)
{
	struct task_struct *t = kthread_create(fn, data, "%s/%u", name, cpu);

	if (IS_ERR(t))
		return PTR_ERR(t);
	if (cpu < nr_cpu_ids && cpu_online(cpu))
		kthread_bind(t, cpu);
	wake_up_process(t);
	return 0;
}

/* A CPU other than the caller's (the caller may still move; good enough). */
static unsigned int other_cpu(void)
{
	unsigned int cpu = cpumask_next(raw_smp_processor_id(), cpu_online_mask);

	return cpu < nr_cpu_ids ? cpu : cpumask_first(cpu_online_mask);
}

static bool atk_share_race(u64 seed)
{
	struct racer r[2] = {};
	struct sac_vm c;
	struct kc_ret o;
	unsigned int i;
	bool ok = true;
	u64 pfn;

	if (sac_create(&c, false, 6))
		return GIVE_UP("cannot make the sacrificial VM");
	pfn = take_pfn();
	if (!pfn)
		return GIVE_UP("no page");
	for (i = 0; i < 2; i++) {
		init_completion(&r[i].done);
		r[i].handle = c.handle;
		r[i].pfn = pfn;
		r[i].gfn = 0x300 + i;
		r[i].cpu = i;
		if (start_on(racer_fn, &r[i], i, "atk-race"))
			return GIVE_UP("cannot start racer %u", i);
	}
	for (i = 0; i < 2; i++)
		wait_for_completion(&r[i].done);
	for (i = 0; i < 2; i++) {
		note("CPU %u: %llu shares, %llu unshares, %llu refused; ", i, r[i].shares,
		     r[i].unshares, r[i].refusals);
		if (r[i].undefined)
			ok = bad("CPU %u saw %llu other results", i, r[i].undefined);
		if (r[i].shares != r[i].unshares)
			ok = bad("CPU %u: shares and unshares differ", i);
	}
	if (!r[0].shares || !r[1].shares)
		note("(one CPU never won the page); ");
	o = kc(KC_HOST_PAGE_OWNER, pfn, 0, 0, 0, 0);
	if (o.status != KC_SUCCESS || o.x1 != KC_OWNER_HOST)
		ok = bad("the page ended as owner %llu, not KServ's", o.x1);
	o = kc(KC_HOST_SELF_CHECK, 0, 0, 0, 0, 0);
	if (o.status != KC_SUCCESS)
		ok = bad("self-check after the race: %lld", o.status);
	return settle() && ok;
}

/* The victim's memory and tables while it runs. */
static bool atk_reclaim_running(u64 seed)
{
	bool ok = true;
	u64 own;

	if (!need_victim())
		return false;
	own = take_pfn();
	ok &= refused("ReclaimPage of a private page",
		      kc(KC_HOST_RECLAIM_PAGE, vic.handle, vic.guest_pfn, 0, 0, 0).status, KC_ERR_BUSY, KC_ERR_BUSY);
	ok &= refused("ReclaimPage of a table page",
		      kc(KC_HOST_RECLAIM_PAGE, vic.handle, vic.table_pfn, 0, 0, 0).status, KC_ERR_BUSY, KC_ERR_BUSY);
	ok &= refused("ReclaimPage of KServ's page", kc(KC_HOST_RECLAIM_PAGE, vic.handle, own, 0, 0, 0).status,
		      KC_ERR_BUSY, KC_ERR_DENIED);
	/* A handle one generation off names no VM. */
	ok &= refused("ReclaimPage with a stale handle",
		      kc(KC_HOST_RECLAIM_PAGE, vic.handle ^ (1ULL << 32), vic.guest_pfn, 0, 0, 0).status,
		      KC_ERR_NOT_FOUND, KC_ERR_INVALID_PARAMETER);
	if (ok)
		note("reclaims of the victim's page and table page refused (Busy: it is not dying); ");
	return settle() && ok;
}

/* ---- vCPU attacks --------------------------------------------------------- */

static const u64 victim_regs[] = {
	KR_X(0), KR_X(1), KR_X(2), KR_X(19), KR_X(29), KR_X(30), KC_REG_PC, KC_REG_PSTATE,
	KC_REG_SP_EL1, KC_REG_ELR_EL1, KC_REG_SPSR_EL1, KC_REG_V_LO, KC_REG_V_LO + 31, KC_REG_CNTVOFF,
	KC_REG_SCTLR_EL1, KC_REG_TTBR1_EL1, KC_REG_MPIDR_EL1,
};

static bool atk_regs(u64 seed)
{
	u64 gets = 0, sets = 0, busy = 0;
	unsigned int round, v, i;
	bool ok = true;

	if (!need_victim())
		return false;
	for (round = 0; round < 200 && ok; round++) {
		for (v = 0; v < vic.vcpus; v++) {
			for (i = 0; i < ARRAY_SIZE(victim_regs); i++) {
				struct kc_ret r = kc(KC_HOST_VCPU_GET_REG, vic.handle, v, victim_regs[i], 0, 0);

				gets++;
				busy += r.status == KC_ERR_BUSY;
				if (r.status != KC_ERR_DENIED && r.status != KC_ERR_BUSY)
					ok = bad("GetReg vCPU %u reg 0x%llx: %lld (x1 0x%llx)", v,
						 victim_regs[i], r.status, r.x1);
				else if (r.x1 || r.x2 || r.x3)
					ok = bad("GetReg refused but returned 0x%llx", r.x1);
				r = kc(KC_HOST_VCPU_SET_REG, vic.handle, v, victim_regs[i], 0x4141414141414141ULL, 0);
				sets++;
				busy += r.status == KC_ERR_BUSY;
				if (r.status != KC_ERR_DENIED && r.status != KC_ERR_BUSY)
					ok = bad("SetReg vCPU %u reg 0x%llx: %lld", v, victim_regs[i], r.status);
			}
		}
		cond_resched();
	}
	note("%llu GetReg and %llu SetReg on the victim's %u vCPUs refused (%llu Busy, the rest Denied); ",
	     gets, sets, vic.vcpus, busy);
	return kcore_answers() && ok;
}

/* Interrupts KServ may not inject: hardware-mapped ones, the guest's timers. */
static bool atk_hw_irq(u64 seed)
{
	static const struct { const char *what; u64 word; s64 want; } bad_irqs[] = {
		{ "hardware-mapped SPI 40", IRQ_WORD(40, 0xa0, KC_IRQ_PENDING) | KC_IRQ_HW | 40ULL << KC_IRQ_HW_INTID_SHIFT, KC_ERR_DENIED },
		{ "hardware-mapped PPI 30 (the host timer)", IRQ_WORD(30, 0xa0, KC_IRQ_PENDING) | KC_IRQ_HW | 30ULL << KC_IRQ_HW_INTID_SHIFT, KC_ERR_DENIED },
		{ "hardware-mapped PPI 27", IRQ_WORD(27, 0xa0, KC_IRQ_PENDING) | KC_IRQ_HW | 27ULL << KC_IRQ_HW_INTID_SHIFT, KC_ERR_DENIED },
		{ "INTID 27 (the guest's timer)", IRQ_WORD(27, 0xa0, KC_IRQ_PENDING), KC_ERR_DENIED },
		{ "INTID 30 (the guest's physical timer)", IRQ_WORD(30, 0xa0, KC_IRQ_PENDING), KC_ERR_DENIED },
		{ "INTID 1020", IRQ_WORD(1020, 0xa0, KC_IRQ_PENDING), KC_ERR_INVALID_PARAMETER },
		{ "state 0", IRQ_WORD(40, 0xa0, 0), KC_ERR_INVALID_PARAMETER },
	};
	struct loop_vm l;
	unsigned int i, v, n = 0;
	struct page *runp;
	u64 *run;
	bool ok = true;

	if (!need_victim())
		return false;
	runp = take_pages(0);
	if (!runp || loop_create(&l))
		return GIVE_UP("cannot make the sacrificial VM");
	run = page_address(runp);
	for (i = 0; i < ARRAY_SIZE(bad_irqs); i++) {
		run_clear(run);
		run[KC_RUN_IRQ_COUNT] = 1;
		run[KC_RUN_IRQS] = bad_irqs[i].word;
		ok &= refused(bad_irqs[i].what,
			      kc(KC_HOST_VCPU_RUN, l.vm.handle, 0, page_to_pfn(runp), 0, 0).status,
			      bad_irqs[i].want, bad_irqs[i].want);
		n++;
		/* The victim's vCPUs: refused before anything runs (Busy while they do). */
		for (v = 0; v < vic.vcpus; v++) {
			ok &= refused(bad_irqs[i].what,
				      kc(KC_HOST_VCPU_RUN, vic.handle, v, page_to_pfn(runp), 0, 0).status,
				      bad_irqs[i].want, KC_ERR_BUSY);
			n++;
		}
	}
	run_clear(run);
	run[KC_RUN_IRQ_COUNT] = 2;
	run[KC_RUN_IRQS] = IRQ_WORD(40, 0xa0, KC_IRQ_PENDING);
	run[KC_RUN_IRQS + 1] = IRQ_WORD(40, 0xa0, KC_IRQ_PENDING);
	ok &= refused("a duplicate", kc(KC_HOST_VCPU_RUN, l.vm.handle, 0, page_to_pfn(runp), 0, 0).status,
		      KC_ERR_INVALID_PARAMETER, KC_ERR_INVALID_PARAMETER);
	run_clear(run);
	run[KC_RUN_IRQ_COUNT] = KC_RUN_MAX_IRQS + 1;
	ok &= refused("17 interrupts", kc(KC_HOST_VCPU_RUN, l.vm.handle, 0, page_to_pfn(runp), 0, 0).status,
		      KC_ERR_INVALID_PARAMETER, KC_ERR_INVALID_PARAMETER);
	n += 2;
	note("%u runs with forbidden interrupts refused (a sacrificial VM and the victim's vCPUs); ", n);
	return settle() && ok;
}

/*
 * Time of check, time of use: KServ rewrites the run page's exit half
 * between an exit and the next entry, and scribbles the entry half from the
 * other CPU while KCore reads it. KCore must complete the MMIO read from its
 * own record of the exit: only the load's register changes, zero- or
 * sign-extended as the instruction says.
 */
struct scribbler {
	struct completion done;
	u64 *run;
	bool stop;
	u64 writes;
};

static int scribbler_fn(void *data)
{
	struct scribbler *s = data;
	u64 x = 0x9e3779b97f4a7c15ULL;

	while (!READ_ONCE(s->stop)) {
		unsigned int w;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/*
		 * Mostly a valid entry (no flags, up to 3 pending SPIs, any
		 * completion) changing under KCore's feet; now and then garbage.
		 */
		if (x % 4) {
			WRITE_ONCE(s->run[KC_RUN_FLAGS], 0);
			WRITE_ONCE(s->run[KC_RUN_COMPLETION], x);
			WRITE_ONCE(s->run[KC_RUN_IRQ_COUNT], (x >> 8) % 4);
			for (w = 0; w < 3; w++)
				WRITE_ONCE(s->run[KC_RUN_IRQS + w],
					   IRQ_WORD(32 + ((x >> (16 + 4 * w)) % 32), 0xa0, KC_IRQ_PENDING));
		} else {
			w = (x >> 32) % (KC_RUN_IRQS + KC_RUN_MAX_IRQS);
			WRITE_ONCE(s->run[w], w == KC_RUN_IRQ_COUNT ? x % 20 : x);
		}
		WRITE_ONCE(s->run[KC_RUN_EXIT_REASON + x % 10], x);
		s->writes++;
		if (!(s->writes % 4096))
			cond_resched();
	}
	complete(&s->done);
	return 0;
}

static bool loop_regs_intact(struct loop_vm *l, u64 *x5, u64 *x6)
{
	unsigned int n;
	bool ok = true;

	for (n = 7; n <= 30; n++) {
		struct kc_ret r = kc(KC_HOST_VCPU_GET_REG, l->vm.handle, 0, KR_X(n), 0, 0);

		if (r.status != KC_SUCCESS || r.x1 != KR_SEED(n))
			ok = bad("x%u is 0x%llx (status %lld)", n, r.x1, r.status);
	}
	*x5 = kc(KC_HOST_VCPU_GET_REG, l->vm.handle, 0, KR_X(5), 0, 0).x1;
	*x6 = kc(KC_HOST_VCPU_GET_REG, l->vm.handle, 0, KR_X(6), 0, 0).x1;
	return ok;
}

static bool atk_toctou(u64 seed)
{
	struct scribbler s = {};
	struct loop_vm l;
	u64 runs = 0, refusals = 0, exits = 0, x5, x6, i;
	bool ok = true;
	s64 st;

	if (loop_create(&l))
		return GIVE_UP("cannot make the sacrificial VM");
	/* 1. A clean exit: the 32-bit read. */
	run_clear(l.run);
	st = loop_run(&l);
	if (st != KC_SUCCESS || l.run[KC_RUN_EXIT_REASON] != KC_EXIT_MMIO || l.run[KC_RUN_EXIT_WIDTH] != 4)
		return GIVE_UP("first run: %lld, exit %llu width %llu", st, l.run[KC_RUN_EXIT_REASON],
			   l.run[KC_RUN_EXIT_WIDTH]);
	/* 2. Rewrite the exit: an 8-byte write to another address, by x7. */
	l.run[KC_RUN_EXIT_FLAGS] = 1;
	l.run[KC_RUN_EXIT_ADDR] = LOOP_IPA;
	l.run[KC_RUN_EXIT_WIDTH] = 8;
	l.run[KC_RUN_EXIT_DATA] = 0x7777777777777777ULL;
	l.run[KC_RUN_COMPLETION] = 0xdeadbeefcafef00dULL;
	st = loop_run(&l);
	if (st != KC_SUCCESS || l.run[KC_RUN_EXIT_REASON] != KC_EXIT_MMIO || l.run[KC_RUN_EXIT_WIDTH] != 1)
		return GIVE_UP("second run: %lld, exit %llu width %llu", st, l.run[KC_RUN_EXIT_REASON],
			   l.run[KC_RUN_EXIT_WIDTH]);
	/* 3. Complete the byte read with a value whose bit 7 is set. */
	l.run[KC_RUN_EXIT_WIDTH] = 8;
	l.run[KC_RUN_COMPLETION] = 0x1234567890abcd80ULL;
	st = loop_run(&l);
	if (st != KC_SUCCESS)
		return GIVE_UP("third run: %lld", st);
	ok &= loop_regs_intact(&l, &x5, &x6);
	if (x5 != 0xcafef00dULL || x6 != 0xffffffffffffff80ULL)
		ok = bad("x5 0x%llx x6 0x%llx after rewritten exits (want 0xcafef00d, 0xffffffffffffff80)",
			 x5, x6);
	note("rewritten exits: w5 = 0xcafef00d, x6 = 0x%llx, x7..x30 intact; ", x6);

	/* 4. The other CPU scribbles the page during 2000 entries. */
	init_completion(&s.done);
	s.run = l.run;
	if (start_on(scribbler_fn, &s, other_cpu(), "atk-scribble"))
		return GIVE_UP("cannot start the scribbler");
	for (i = 0; i < 2000; i++) {
		st = kc(KC_HOST_VCPU_RUN, l.vm.handle, 0, l.run_pfn, 0, 0).status;
		runs++;
		if (st == KC_SUCCESS)
			exits++;
		else if (st == KC_ERR_INVALID_PARAMETER || st == KC_ERR_DENIED)
			refusals++;
		else
			ok = bad("run during scribbling: %lld", st);
		if (!(i % 64))
			cond_resched();
	}
	WRITE_ONCE(s.stop, true);
	wait_for_completion(&s.done);
	note("%llu entries under scribbling: %llu ran to an exit, %llu refused (%llu scribbles); ",
	     runs, exits, refusals, s.writes);
	/* 5. Afterwards: the loads' registers only, each as wide as its load. */
	ok &= loop_regs_intact(&l, &x5, &x6);
	if (x5 >> 32)
		ok = bad("x5 0x%llx has bits above a 32-bit load", x5);
	if ((u64)(s64)(s8)x6 != x6)
		ok = bad("x6 0x%llx is not a sign-extended byte", x6);
	return settle() && ok;
}

/*
 * Destroy a VM while its vCPU runs: one CPU runs the vCPU, which spins in
 * the guest until a host interrupt ends each run (KServ's tick, which KCore
 * keeps while a guest runs), so it is inside almost all the time; the other
 * CPU tears the VM down until KCore agrees, which it may only do in the gap
 * between two runs.
 */
struct runner {
	struct completion done;
	struct loop_vm *l;
	u64 runs, refused_after, other;
	bool stop;
};

static int runner_fn(void *data)
{
	struct runner *r = data;
	unsigned int i;

	for (i = 0; !READ_ONCE(r->stop); i++) {
		s64 s = kc(KC_HOST_VCPU_RUN, r->l->vm.handle, 0, r->l->run_pfn, 0, 0).status;

		if (s == KC_SUCCESS) {
			WRITE_ONCE(r->runs, r->runs + 1);
		} else if (s == KC_ERR_DENIED || s == KC_ERR_NOT_FOUND) {
			if (++r->refused_after >= 100)
				break;
		} else {
			r->other++;
		}
		if (!(i % 64))
			cond_resched();
	}
	complete(&r->done);
	return 0;
}

static bool atk_destroy_in_exit(u64 seed)
{
	struct runner r = {};
	struct loop_vm l;
	u64 busy = 0, tries = 0;
	bool ok = true, stopped = false;
	unsigned int i;
	s64 s;

	if (loop_create(&l))
		return GIVE_UP("cannot make the sacrificial VM");
	if (kc(KC_HOST_VCPU_SET_REG, l.vm.handle, 0, KC_REG_PC, LOOP_SPIN, 0).status)
		return GIVE_UP("cannot point the vCPU at its spin loop");
	run_clear(l.run);
	init_completion(&r.done);
	r.l = &l;
	if (start_on(runner_fn, &r, other_cpu(), "atk-runner"))
		return GIVE_UP("cannot start the runner");
	/* Let it run a while, then tear down until KCore agrees. */
	while (READ_ONCE(r.runs) < 20 && !completion_done(&r.done))
		usleep_range(100, 200);
	/*
	 * The first teardown goes in while KCore reports the run page pinned
	 * (the vCPU is in): one that fell into a gap between two runs would
	 * succeed at once and show nothing (seen on a slow machine).
	 */
	for (i = 0; i < 200000 && !completion_done(&r.done); i++) {
		struct kc_ret o = kc(KC_HOST_PAGE_OWNER, l.run_pfn, 0, 0, 0, 0);

		if (o.status == KC_SUCCESS && o.x1 == KC_OWNER_HOST_PINNED)
			break;
		if (!(i % 64))
			cond_resched();
	}
	do {
		s = kc(KC_HOST_TEARDOWN_VM, l.vm.handle, 0, 0, 0, 0).status;
		tries++;
		busy += s == KC_ERR_BUSY;
		if (s != KC_SUCCESS && s != KC_ERR_BUSY) {
			ok = bad("teardown: %lld", s);
			break;
		}
		if (!(tries % 64))
			cond_resched();
	} while (s == KC_ERR_BUSY && tries < 200000);
	if (s == KC_ERR_BUSY) {
		/* The gaps between runs are short: stop the runner, then it must go. */
		WRITE_ONCE(r.stop, true);
		wait_for_completion(&r.done);
		stopped = true;
		s = kc(KC_HOST_TEARDOWN_VM, l.vm.handle, 0, 0, 0, 0).status;
		if (s != KC_SUCCESS)
			ok = bad("teardown with the vCPU out: %lld", s);
	}
	if (!stopped)
		wait_for_completion(&r.done);
	/* Runs after the teardown: the runner's, or ours if it was stopped. */
	for (i = 0; stopped && i < 100; i++) {
		s = kc(KC_HOST_VCPU_RUN, l.vm.handle, 0, l.run_pfn, 0, 0).status;
		if (s == KC_ERR_DENIED || s == KC_ERR_NOT_FOUND)
			r.refused_after++;
		else
			r.other++;
	}
	note("teardown after %llu runs: %llu Busy while the vCPU was in, then ok%s; "
	     "%llu later runs refused; ", r.runs, busy,
	     stopped ? " once it was out" : " between two runs", r.refused_after);
	if (!busy)
		ok = bad("no teardown was refused while the vCPU ran");
	if (r.other)
		ok = bad("%llu runs returned something else", r.other);
	if (r.refused_after < 100)
		ok = bad("runs after teardown were not refused");
	return settle() && ok;
}

/* ---- the run page while a vCPU runs ---------------------------------------- */

/*
 * KCore writes a vCPU's exit into its run page after the guest ran with
 * KCore's lock dropped; the page is pinned from the load to that write. While
 * another CPU runs the loop VM's spinning vCPU, this CPU offers the run page
 * as a new VM's stage-2 root, as a table-pool (vCPU-context) page and as the
 * memory of a protected VM, and shares it into the running VM. Offers are
 * made while KCore reports the page pinned; each must be Busy. One made just
 * as the vCPU left may be granted: then everything is taken back and the
 * round starts again.
 */
#define RP_KINDS	4
#define RP_WANT		20
static const char *const rp_kind[RP_KINDS] = { "VM root", "pool page", "protected VM's memory", "shared page" };

static s64 rp_offer(unsigned int kind, struct loop_vm *l, struct sac_vm *prot)
{
	switch (kind) {
	/* A one-page root: a 36-bit IPA space. */
	case 0: return kc(KC_HOST_CREATE_VM, 0, 36, 1, l->run_pfn, 1).status;
	case 1: return kc(KC_HOST_DONATE_VM_POOL, prot->handle, l->run_pfn, 0, 0, 0).status;
	case 2: return kc(KC_HOST_DONATE_GUEST, prot->handle, l->run_pfn, 0x100, 0, 0).status;
	default: return kc(KC_HOST_SHARE_GUEST, l->vm.handle, l->run_pfn, 0x50000, 0, 0).status;
	}
}

static bool atk_run_page(u64 seed)
{
	u64 busy[RP_KINDS] = {}, granted = 0, pinned_seen = 0, offers = 0;
	unsigned int round, k, i;
	bool ok = true, done = false;

	for (round = 0; round < 3 && !done && ok; round++) {
		struct runner r = {};
		struct loop_vm l;
		struct sac_vm prot;
		bool again = false;

		if (loop_create(&l) || sac_create(&prot, true, 0))
			return GIVE_UP("cannot make the sacrificial VMs");
		if (kc(KC_HOST_VCPU_SET_REG, l.vm.handle, 0, KC_REG_PC, LOOP_SPIN, 0).status)
			return GIVE_UP("cannot point the vCPU at its spin loop");
		run_clear(l.run);
		init_completion(&r.done);
		r.l = &l;
		if (start_on(runner_fn, &r, other_cpu(), "atk-runner"))
			return GIVE_UP("cannot start the runner");
		while (READ_ONCE(r.runs) < 5 && !completion_done(&r.done))
			usleep_range(100, 200);
		for (i = 0; i < 200000 && !again && !completion_done(&r.done); i++) {
			struct kc_ret o = kc(KC_HOST_PAGE_OWNER, l.run_pfn, 0, 0, 0, 0);
			s64 s;

			if (!(i % 64))
				cond_resched();
			if (o.status != KC_SUCCESS || o.x1 != KC_OWNER_HOST_PINNED)
				continue;
			pinned_seen++;
			k = offers++ % RP_KINDS;
			s = rp_offer(k, &l, &prot);
			if (s == KC_ERR_BUSY) {
				busy[k]++;
			} else if (s == KC_SUCCESS) {
				/* The vCPU had just left: take it all back, start again. */
				granted++;
				again = true;
			} else {
				ok = bad("offering the run page as %s: %lld (%s)", rp_kind[k], s,
					 kc_name(s) ?: "undefined");
				break;
			}
			done = true;
			for (k = 0; k < RP_KINDS; k++)
				done &= busy[k] >= RP_WANT;
			if (done)
				break;
		}
		WRITE_ONCE(r.stop, true);
		wait_for_completion(&r.done);
		if (r.other)
			ok = bad("%llu runs returned neither ok nor a refusal", r.other);
		ok &= settle();
		note("; ");
	}
	note("seen pinned %llu times; Busy as", pinned_seen);
	for (k = 0; k < RP_KINDS; k++)
		note(" %s %llu%s", rp_kind[k], busy[k], k + 1 < RP_KINDS ? "," : "");
	note("; %llu granted just after the vCPU left", granted);
	for (k = 0; k < RP_KINDS; k++)
		if (busy[k] < RP_WANT)
			ok = bad("the run page was offered as %s while pinned and refused Busy only %llu times",
				 rp_kind[k], busy[k]);
	return ok;
}

/* ---- hypercall fuzzing ---------------------------------------------------- */

#define FUZZ_CALLS 50000
/* Each fuzzer's own pages: one block, so a VM pool range can stay inside it. */
#define FUZZ_OWN_ORDER 5
#define FUZZ_OWN (1U << FUZZ_OWN_ORDER)

struct fuzzer {
	struct completion done;
	unsigned int cpu;
	u64 seed;
	struct sac_vm vms[2];
	u64 own;		/* first of FUZZ_OWN pages it may give away */
	u64 run_pfn;
	u64 *run;
	u64 calls, per_call[KC_HYPERCALLS + 1], status[N_STATUS];
	u64 undefined_example;
};

static u64 rnd(u64 *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static struct fuzzer fz[2];

static u64 fuzz_handle(struct fuzzer *f, u64 *x)
{
	switch (rnd(x) % 8) {
	case 0: return vic.handle;
	case 1: case 2: return f->vms[rnd(x) % 2].handle;
	case 3: return fz[f->cpu ^ 1].vms[rnd(x) % 2].handle;
	case 4: return 0;
	case 5: return rnd(x);
	case 6: return f->vms[0].handle ^ (1ULL << (rnd(x) % 64));
	default: return rnd(x) % 32;
	}
}

static u64 fuzz_pfn(struct fuzzer *f, u64 *x)
{

	switch (rnd(x) % 10) {
	case 0: return vic.guest_pfn;
	case 1: return vic.table_pfn;
	case 2: return vic.kcore_pfn + rnd(x) % vic.kcore_pages;
	case 3: return vic.ram_last + 1 + rnd(x) % 1024;
	case 4: return rnd(x);
	case 5:
		/* Any page of RAM KServ does not own (ours it may give). */
		return vic.ram_first + rnd(x) % (vic.ram_last - vic.ram_first + 1);
	default: return f->own + rnd(x) % FUZZ_OWN;
	}
}

/*
 * A pfn the call may take: one of the fuzzer's own, or any page KServ does
 * not own. A page of KServ's in use by its kernel would be given away for
 * real (KServ may donate what it owns) and crash KServ, which proves nothing.
 */
static u64 safe_pfn(struct fuzzer *f, u64 *x, u64 pfn)
{
	struct kc_ret r;

	if (pfn - f->own < FUZZ_OWN)
		return pfn;
	r = kc(KC_HOST_PAGE_OWNER, pfn, 0, 0, 0, 0);
	if (r.status == KC_SUCCESS &&
	    (r.x1 == KC_OWNER_HOST || r.x1 == KC_OWNER_HOST_SHARED_WITH_GUEST || r.x1 == KC_OWNER_HOST_PINNED))
		return f->own + rnd(x) % FUZZ_OWN;
	return pfn;
}

static u64 fuzz_gfn(u64 *x)
{
	switch (rnd(x) % 4) {
	case 0: return rnd(x) % 0x1000;
	case 1: return rnd(x) & ((1ULL << 28) - 1);	/* inside 40 bits */
	case 2: return (1ULL << 28) + rnd(x) % 16;	/* just outside */
	default: return rnd(x);
	}
}

static u64 fuzz_reg(u64 *x)
{
	switch (rnd(x) % 4) {
	case 0: return rnd(x) % 40;
	case 1: return KC_REG_V_LO + rnd(x) % 0x48;
	case 2: return victim_regs[rnd(x) % ARRAY_SIZE(victim_regs)];
	default: return rnd(x);
	}
}

static u64 fuzz_small(u64 *x)
{
	switch (rnd(x) % 3) {
	case 0: return rnd(x) % 8;
	case 1: return rnd(x) % 70;
	default: return rnd(x);
	}
}

/*
 * One random call. The function id: mostly KCore's (one past the end
 * included), else Linux's hyp-stub ids, random vendor ids, PSCI/SMCCC ids
 * or anything. Arguments: drawn per slot from handles, pfns, gfns, register
 * ids and small numbers, or random. Guard: calls that could legitimately
 * stop, run or grow the victim go to the fuzzer's own VM instead.
 */
static void fuzz_one(struct fuzzer *f, u64 *x)
{
	u64 fn, a[5], call;
	unsigned int i;
	struct kc_ret r;

	switch (rnd(x) % 20) {
	case 0: fn = rnd(x) % 4; break;
	case 1: fn = KC_HYPERCALL_BASE | (rnd(x) & 0xffff); break;
	case 2: fn = KC_PSCI_FIRST_32 + rnd(x) % (KC_PSCI_LAST_32 - KC_PSCI_FIRST_32 + 1); break;
	case 3: fn = rnd(x); break;
	default: fn = KC_HYPERCALL_BASE + rnd(x) % (KC_HYPERCALLS + 1); break;
	}
	call = fn - KC_HYPERCALL_BASE;
	for (i = 0; i < 5; i++) {
		switch (rnd(x) % 6) {
		case 0: a[i] = fuzz_handle(f, x); break;
		case 1: case 2: a[i] = fuzz_pfn(f, x); break;
		case 3: a[i] = fuzz_gfn(x); break;
		case 4: a[i] = fuzz_small(x); break;
		default: a[i] = fuzz_reg(x); break;
		}
	}
	/* Shape the common calls: a handle first, then what the call takes. */
	if (call < KC_HYPERCALLS && rnd(x) % 4) {
		a[0] = fuzz_handle(f, x);
		switch (fn) {
		case KC_HOST_CREATE_VM:
			a[0] = rnd(x) % 3;
			a[1] = rnd(x) % 2 ? 0 : rnd(x) % 52;
			a[2] = fuzz_small(x);
			a[3] = fuzz_pfn(f, x);
			a[4] = rnd(x) % 2 ? 2 : fuzz_small(x);
			break;
		case KC_HOST_DONATE_VM_POOL:
		case KC_HOST_RECLAIM_PAGE:
		case KC_HOST_PAGE_OWNER:
			a[1] = fuzz_pfn(f, x);
			if (fn == KC_HOST_PAGE_OWNER)
				a[0] = a[1];
			break;
		case KC_HOST_DONATE_GUEST:
		case KC_HOST_SHARE_GUEST:
			a[1] = fuzz_pfn(f, x);
			a[2] = fuzz_gfn(x);
			a[3] = rnd(x) % 3;
			break;
		case KC_HOST_UNSHARE_GUEST:
			a[1] = fuzz_gfn(x);
			break;
		case KC_HOST_VCPU_RUN:
			a[1] = rnd(x) % 3;
			a[2] = rnd(x) % 2 ? f->run_pfn : fuzz_pfn(f, x);
			/* Run-page contents: mostly a valid empty entry. */
			memset(f->run, 0, 8 * (KC_RUN_IRQS + KC_RUN_MAX_IRQS));
			if (rnd(x) % 2)
				f->run[rnd(x) % (KC_RUN_IRQS + KC_RUN_MAX_IRQS)] = rnd(x) % 2 ? rnd(x) : rnd(x) % 32;
			break;
		case KC_HOST_VCPU_GET_REG:
		case KC_HOST_VCPU_SET_REG:
			a[1] = rnd(x) % 3;
			a[2] = fuzz_reg(x);
			break;
		case KC_HOST_DECLARE_MMIO:
			a[1] = fuzz_gfn(x);
			a[2] = fuzz_small(x);
			break;
		}
	}
	/* Pages given away, or written (the run page), are safe ones. */
	switch (fn) {
	case KC_HOST_CREATE_VM:
		a[3] = safe_pfn(f, x, a[3]);
		/* A pool inside the own block stays inside it. */
		if (a[3] - f->own < FUZZ_OWN && a[4] > f->own + FUZZ_OWN - a[3])
			a[4] = f->own + FUZZ_OWN - a[3];
		break;
	case KC_HOST_DONATE_VM_POOL:
	case KC_HOST_DONATE_GUEST:
	case KC_HOST_SHARE_GUEST:
		a[1] = safe_pfn(f, x, a[1]);
		break;
	case KC_HOST_VCPU_RUN:
		a[2] = safe_pfn(f, x, a[2]);
		break;
	}
	/* The guard: the victim is never stopped, run, or given pages. */
	if (a[0] == vic.handle &&
	    (fn == KC_HOST_TEARDOWN_VM || fn == KC_HOST_VCPU_RUN || fn == KC_HOST_CREATE_VCPU ||
	     fn == KC_HOST_DONATE_VM_POOL || fn == KC_HOST_DONATE_GUEST || fn == KC_HOST_SHARE_GUEST ||
	     fn == KC_HOST_UNSHARE_GUEST || fn == KC_HOST_DECLARE_MMIO))
		a[0] = f->vms[rnd(x) % 2].handle;
	/* The self-check walks every table: one call in 2000. */
	if (fn == KC_HOST_SELF_CHECK && rnd(x) % 100)
		fn = KC_VERSION;
	r = kc(fn, a[0], a[1], a[2], a[3], a[4]);
	f->calls++;
	f->per_call[call < KC_HYPERCALLS ? call : KC_HYPERCALLS]++;
	i = status_slot(r.status);
	f->status[i]++;
	/* Only the known calls have codes of their own; others answer -1. */
	if (call >= KC_HYPERCALLS && fn != KC_SMCCC_VENDOR_HYP_CALL_UID && r.status != KC_ERR_NOT_SUPPORTED) {
		f->status[N_STATUS - 1]++;
		f->undefined_example = fn;
	}
	if (i == N_STATUS - 1)
		f->undefined_example = fn;
}

static int fuzzer_fn(void *data)
{
	struct fuzzer *f = data;
	u64 x = f->seed | 1;
	unsigned int i;

	for (i = 0; i < FUZZ_CALLS; i++) {
		fuzz_one(f, &x);
		if (!(i % 128))
			cond_resched();
	}
	complete(&f->done);
	return 0;
}

static bool atk_fuzz(u64 seed)
{
	static const char *const names[KC_HYPERCALLS + 1] = { KC_HYPERCALL_NAMES, "other" };
	u64 total = 0, per_call[KC_HYPERCALLS + 1] = {}, status[N_STATUS] = {}, lo, hi;
	unsigned int c, i, j;
	struct page *runp;
	bool ok = true;

	if (!need_victim())
		return false;
	memset(fz, 0, sizeof(fz));
	for (c = 0; c < 2; c++) {
		struct fuzzer *f = &fz[c];

		f->cpu = c;
		f->seed = seed * 2 + c + 0x5851f42d4c957f2dULL;
		init_completion(&f->done);
		if (sac_create(&f->vms[0], false, 2) || sac_create(&f->vms[1], true, 2))
			return GIVE_UP("cannot make the fuzzer's VMs");
		runp = take_pages(FUZZ_OWN_ORDER);
		if (!runp)
			return GIVE_UP("no pages");
		f->own = page_to_pfn(runp);
		runp = take_pages(0);
		if (!runp)
			return GIVE_UP("no run page");
		f->run_pfn = page_to_pfn(runp);
		f->run = page_address(runp);
	}
	for (c = 0; c < 2; c++)
		if (start_on(fuzzer_fn, &fz[c], c, "atk-fuzz"))
			return GIVE_UP("cannot start fuzzer %u", c);
	for (c = 0; c < 2; c++)
		wait_for_completion(&fz[c].done);
	for (c = 0; c < 2; c++) {
		total += fz[c].calls;
		for (i = 0; i <= KC_HYPERCALLS; i++)
			per_call[i] += fz[c].per_call[i];
		for (i = 0; i < N_STATUS; i++)
			status[i] += fz[c].status[i];
		if (fz[c].status[N_STATUS - 1])
			ok = bad("CPU %u: %llu undefined answers (e.g. to 0x%llx)", c,
				 fz[c].status[N_STATUS - 1], fz[c].undefined_example);
	}
	pr_info("fuzz: calls by id:");
	for (i = 0; i <= KC_HYPERCALLS; i++)
		pr_cont(" %s %llu", names[i], per_call[i]);
	pr_cont("\n");
	lo = U64_MAX;
	hi = 0;
	for (i = 0; i < KC_HYPERCALLS; i++) {
		lo = min(lo, per_call[i]);
		hi = max(hi, per_call[i]);
	}
	note("seed %llu: %llu calls from 2 CPUs (%llu + %llu): each of KCore's %u calls %llu-%llu times, "
	     "%llu other ids; results:", seed, total, fz[0].calls, fz[1].calls, KC_HYPERCALLS, lo, hi,
	     per_call[KC_HYPERCALLS]);
	for (j = 0; j < N_STATUS - 1; j++) {
		if (status[j])
			note(" %s %llu", kc_name(known_status[j]), status[j]);
	}
	note("; ");
	if (status[status_slot(KC_ERR_SELF_CHECK_FAILED)])
		ok = bad("a self-check failed during fuzzing");
	ok = kcore_answers() && ok;
	note("; ");
	return settle() && ok;
}

/* KCore's self-check on its own: the ownership table against every stage 2. */
static bool atk_self_check(u64 seed)
{
	struct kc_ret r = kc(KC_HOST_SELF_CHECK, 0, 0, 0, 0, 0);

	if (r.status != KC_SUCCESS)
		return bad("self-check %lld (%s)", r.status, kc_name(r.status) ?: "undefined");
	note("ownership table agrees with every stage 2: host %llu, guests %llu, tables %llu pages; "
	     "module pages never returned: %llu", r.x1, r.x2, r.x3, leaked);
	return leaked == 0;
}

/* ---- the table ------------------------------------------------------------ */

struct attack {
	const char *name;
	const char *expected;
	bool (*run)(u64 seed);
};

static const struct attack attacks[] = {
	{ "scan", "KCore names every page's owner; a live protected VM is found (its registers are Denied)", atk_scan },
	{ "linear-read", "reading a protected VM's page through the kernel's linear map faults: KCore injects an external abort, the reading kthread dies in an Oops, KCore keeps serving", atk_linear_read },
	{ "linear-write", "writing it the same way faults the same way", atk_linear_write },
	{ "vmap", "a fresh kernel mapping (vmap) of that page faults on read and on write", atk_vmap },
	{ "kcore-map", "a fresh mapping (memremap) of KCore's own memory faults on read and on write", atk_kcore_map },
	{ "donate-foreign", "donating, sharing, pooling or building a VM from a page KServ does not own (KCore's, the victim's memory or tables) is Denied; a pfn outside RAM is InvalidParameter", atk_donate_foreign },
	{ "donate-twice", "a page donated to one VM cannot go to a second VM, to a second gfn, or be shared or pooled; a shared page cannot be shared at a second gfn or donated; a taken gfn is Busy", atk_donate_twice },
	{ "share-race", "sharing and unsharing one page at two gfns from two CPUs at once (20,000 rounds each): every call succeeds or is refused, never both shares at once; the page ends KServ's; the self-check agrees", atk_share_race },
	{ "reclaim-running", "reclaiming a running VM's memory or table pages is Busy (only a dying VM's pages come back)", atk_reclaim_running },
	{ "regs", "reading or setting any register of a running protected vCPU is Denied (Busy while it runs) and returns no value", atk_regs },
	{ "hw-irq", "runs asking for hardware-mapped interrupts or the guest's timer INTID are Denied; malformed interrupt lists are InvalidParameter; nothing runs", atk_hw_irq },
	{ "toctou", "KCore completes an MMIO read from its own record of the exit, whatever KServ rewrote in the run page: only the load's register changes, with the load's width and sign; a run page scribbled during entry is used whole or refused", atk_toctou },
	{ "its", "the ITS is KCore's: KServ's device tree shows it disabled, and pointing GITS_BASER0 at KCore's memory or a protected page, writing GITS_CBASER or reading GITS_CTLR faults", atk_its },
	{ "gic-redist", "GICR_PROPBASER and GICR_PENDBASER written with a protected page's and KCore's addresses read back 0, GICR_CTLR.EnableLPIs stays clear, GICR_TYPER and GICR_WAKER still answer", atk_gicr },
	{ "gich", "on a GICv2 host the virtual interface control (GICH) is KCore's: a fresh mapping faults on reading GICH_HCR and on writing GICH_LR0", atk_gich },
	{ "gicv", "on a GICv2 host the virtual CPU interface (GICV) is KCore's: a fresh mapping faults on reading GICV_CTLR and on writing GICV_PMR", atk_gicv },
	{ "smc", "KServ's SMCs outside PSCI: SDEI (an event registered with KServ's code as its EL2 entry), SiP, OEM, Trusted OS and SOC_ID calls answer NOT_SUPPORTED with x1..x3 untouched; the allow-listed SMCCC and TRNG calls come back; KCore keeps serving", atk_smc },
	{ "dma-masters", "fw_cfg's DMA interface, the PCIe host bridge and the virtio-mmio transports are KCore's: disabled in KServ's tree, and pointing fw_cfg's DMA at KCore's memory or reading PCIe config space or a transport faults", atk_dma_masters },
	{ "mmio-consent", "on a fresh protected VM with the signed test guest, MMIO is declared only after verification and only inside the manifest its signature covers: before, over the guest's RAM or image, or past the manifest it is Denied; no page is donated where devices are", atk_mmio_consent },
	{ "gic-table", "a protected VM's memory is read through KCore's ITS path only inside tables its guest programmed: on the running victim and on a fresh verified VM whose ITS KServ placed, reads of private pages and of the image are Denied, and frames go only into the VM's MMIO, once, before it ran", atk_gic_table },
	{ "secondary", "a verified protected VM's vCPU 1 takes no PC or x0 from KServ and does not run before the guest's own CPU_ON (all Denied); vCPU 0 takes its first PC inside the image", atk_secondary },
	{ "run-page", "while another CPU runs a vCPU, its run page (pinned by KCore: owner HostPinned) offered as a new VM's root, a table-pool page, a protected VM's memory or a page shared into the VM is Busy every time (20 of each); every page comes back; the self-check agrees", atk_run_page },
	{ "destroy-in-exit", "tearing a VM down while another CPU runs its vCPU is Busy until the vCPU is out; then every run is refused and every page comes back scrubbed", atk_destroy_in_exit },
	{ "fuzz", "100,000 calls with random ids and arguments from 2 CPUs: every one answers a defined status, unknown ids NotSupported; KCore keeps serving; every page the fuzzer gave away comes back scrubbed; the self-check agrees", atk_fuzz },
	{ "self-check", "KCore's ownership table agrees with every stage 2; no page the attacks gave away stayed away", atk_self_check },
};

static ssize_t run_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[64], *seed_s;
	const struct attack *a = NULL;
	u64 seed = 1;
	unsigned int i;
	bool pass;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = 0;
	strim(buf);
	seed_s = strchr(buf, ' ');
	if (seed_s) {
		*seed_s++ = 0;
		if (kstrtou64(skip_spaces(seed_s), 0, &seed))
			return -EINVAL;
	}
	for (i = 0; i < ARRAY_SIZE(attacks); i++)
		if (!strcmp(buf, attacks[i].name))
			a = &attacks[i];
	if (!a)
		return -ENOENT;

	mutex_lock(&atk_lock);
	obs_len = 0;
	obs[0] = 0;
	pr_info("%s: expected: %s\n", a->name, a->expected);
	pass = a->run(seed);
	pr_info("%s: observed: %s %s\n", a->name, pass ? "PASS" : "FAIL", obs);
	scnprintf(report, sizeof(report), "expected %s\nobserved %s %s\n", a->expected,
		  pass ? "PASS" : "FAIL", obs);
	mutex_unlock(&atk_lock);
	return count;
}

static ssize_t run_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	ssize_t n;

	mutex_lock(&atk_lock);
	n = simple_read_from_buffer(ubuf, count, ppos, report, strlen(report));
	mutex_unlock(&atk_lock);
	return n;
}

static const struct file_operations run_fops = {
	.owner = THIS_MODULE,
	.read = run_read,
	.write = run_write,
	.llseek = default_llseek,
};

/* Every attack and what it expects, one "name<TAB>expected" line each. */
static ssize_t list_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	size_t len = 0, cap = 0;
	unsigned int i;
	ssize_t n;
	char *buf;

	for (i = 0; i < ARRAY_SIZE(attacks); i++)
		cap += strlen(attacks[i].name) + strlen(attacks[i].expected) + 2;
	buf = kmalloc(cap + 1, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < ARRAY_SIZE(attacks); i++)
		len += scnprintf(buf + len, cap + 1 - len, "%s\t%s\n", attacks[i].name,
				 attacks[i].expected);
	n = simple_read_from_buffer(ubuf, count, ppos, buf, len);
	kfree(buf);
	return n;
}

static const struct file_operations list_fops = {
	.owner = THIS_MODULE,
	.read = list_read,
	.llseek = default_llseek,
};

static ssize_t info_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	char buf[320];
	int n;

	mutex_lock(&atk_lock);
	n = scnprintf(buf, sizeof(buf),
		      "found %d\nvictim 0x%llx\nvcpus %u\nguest_pfn 0x%llx\ntable_pfn 0x%llx\n"
		      "kcore_pfn 0x%llx\nguest_pages %llu\nleaked %llu\n",
		      vic.found, vic.handle, vic.vcpus, vic.guest_pfn, vic.table_pfn, vic.kcore_pfn,
		      vic.guest_pages, leaked);
	mutex_unlock(&atk_lock);
	return simple_read_from_buffer(ubuf, count, ppos, buf, n);
}

static const struct file_operations info_fops = {
	.owner = THIS_MODULE,
	.read = info_read,
	.llseek = default_llseek,
};

/*
 * The `residue` file: write 32 hex digits (16 bytes a protected guest
 * planted before a reset), read how many places in RAM still hold them. Every
 * page of every memory node that KCore says is KServ's is read (KCore's own
 * pages would fault and cannot hold a guest's data); the 16 bytes are looked
 * for at every 16-byte boundary. Only the bytes XORed with a key are kept in
 * memory, so the scanner does not find its own copy.
 */
#define RESIDUE_KEY0	0x5a5a5a5a5a5a5a5aULL
#define RESIDUE_KEY1	0xa5a5a5a5a5a5a5a5ULL
static char residue_report[256];

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static ssize_t residue_write(struct file *file, const char __user *ubuf, size_t count, loff_t *ppos)
{
	u64 keyed[2] = {}, places = 0, pages = 0, skipped = 0, first = 0;
	struct device_node *np;
	char buf[40];
	unsigned int i;

	if (count < 32 || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	/* Little-endian words, as the bytes lie in memory; keyed as parsed. */
	for (i = 0; i < 16; i++) {
		int hi = hex_nibble(buf[2 * i]), lo = hex_nibble(buf[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		keyed[i / 8] |= (u64)((hi << 4 | lo) ^ (i < 8 ? 0x5a : 0xa5)) << (8 * (i % 8));
	}
	memzero_explicit(buf, sizeof(buf));
	for_each_node_by_type(np, "memory") {
		struct resource res;
		int idx;

		for (idx = 0; !of_address_to_resource(np, idx, &res); idx++) {
			u64 pfn, last = PFN_DOWN(res.end + 1);

			for (pfn = PFN_UP(res.start); pfn < last; pfn++) {
				struct kc_ret r = kc(KC_HOST_PAGE_OWNER, pfn, 0, 0, 0, 0);
				const u64 *w;

				if (r.status != KC_SUCCESS || r.x1 == KC_OWNER_KCORE || !pfn_valid(pfn)) {
					skipped++;
					continue;
				}
				w = kmap_local_page(pfn_to_page(pfn));
				for (i = 0; i < PAGE_SIZE / 8; i += 2)
					if ((w[i] ^ RESIDUE_KEY0) == keyed[0] &&
					    (w[i + 1] ^ RESIDUE_KEY1) == keyed[1] && !places++)
						first = PFN_PHYS(pfn) + 8 * i;
				kunmap_local(w);
				pages++;
				if (!(pages % 1024))
					cond_resched();
			}
		}
	}
	scnprintf(residue_report, sizeof(residue_report),
		  "%llu places hold the planted bytes (first at 0x%llx); %llu pages read, %llu skipped (KCore's)\n",
		  places, first, pages, skipped);
	return count;
}

static ssize_t residue_read(struct file *file, char __user *ubuf, size_t count, loff_t *ppos)
{
	return simple_read_from_buffer(ubuf, count, ppos, residue_report, strlen(residue_report));
}

static const struct file_operations residue_fops = {
	.owner = THIS_MODULE,
	.read = residue_read,
	.write = residue_write,
	.llseek = default_llseek,
};

/* Any physical page into the caller's address space: /dev/mem without its checks. */
static int mem_mmap(struct file *file, struct vm_area_struct *vma)
{
	return remap_pfn_range(vma, vma->vm_start, vma->vm_pgoff, vma->vm_end - vma->vm_start,
			       vma->vm_page_prot);
}

static const struct file_operations mem_fops = {
	.owner = THIS_MODULE,
	.mmap = mem_mmap,
};

/*
 * rogue_off: the looping CPU prints through printk (the console driver
 * polls its UART, so each line needs nothing but that CPU) and never
 * enters KCore on its own: no HVC, no SMC, interrupts off.
 */
static atomic_t rogue_lines = ATOMIC_INIT(0);

static int rogue_loop(void *unused)
{
	local_irq_disable();
	for (;;) {
		pr_info("rogue CPU %d still running (%d)\n", smp_processor_id(),
			atomic_inc_return(&rogue_lines));
		mdelay(100);
	}
	return 0;
}

static ssize_t rogue_off_write(struct file *file, const char __user *ubuf, size_t count,
			       loff_t *ppos)
{
	struct arm_smccc_res res;
	struct task_struct *t;
	unsigned int cpu;

	/* This task stays off the rogue CPU, which never schedules again. */
	migrate_disable();
	cpu = cpumask_any_but(cpu_online_mask, smp_processor_id());
	if (cpu >= nr_cpu_ids) {
		migrate_enable();
		return -ENODEV;
	}
	t = kthread_create_on_cpu(rogue_loop, NULL, cpu, "kserv-rogue/%u");
	if (IS_ERR(t)) {
		migrate_enable();
		return PTR_ERR(t);
	}
	wake_up_process(t);
	while (atomic_read(&rogue_lines) < 3)
		msleep(10);
	pr_info("SYSTEM_OFF from CPU %d with CPU %u still running\n", smp_processor_id(), cpu);
	arm_smccc_smc(PSCI_0_2_FN_SYSTEM_OFF, 0, 0, 0, 0, 0, 0, 0, &res);
	migrate_enable();
	pr_err("SYSTEM_OFF returned %ld\n", (long)res.a0);
	return -EIO;
}

static const struct file_operations rogue_off_fops = {
	.owner = THIS_MODULE,
	.write = rogue_off_write,
};

static struct dentry *dir;

static int __init kserv_attack_init(void)
{
	struct device_node *np = of_find_node_by_path("/hypervisor");
	u32 chosen_abi;

	/*
	 * HVCs only with KCore underneath (see kserv_shim_glue.c): its
	 * /hypervisor node, or on an ACPI machine /chosen/kcore,abi-version.
	 */
	if (!is_kernel_in_hyp_mode() && !np && !kserv_shim_chosen_abi(&chosen_abi)) {
		pr_info("KCore announced in /chosen (ACPI machine)\n");
	} else if (is_kernel_in_hyp_mode() || !np ||
		   !of_device_is_compatible(np, "kcore,hypervisor")) {
		of_node_put(np);
		pr_err("no KCore underneath: not loading\n");
		return -ENODEV;
	}
	of_node_put(np);
	dir = debugfs_create_dir("kserv_attack", NULL);
	debugfs_create_file("run", 0600, dir, NULL, &run_fops);
	debugfs_create_file("info", 0400, dir, NULL, &info_fops);
	debugfs_create_file("list", 0400, dir, NULL, &list_fops);
	debugfs_create_file("residue", 0600, dir, NULL, &residue_fops);
	/* Not proxied: debugfs's proxy has no mmap. */
	debugfs_create_file_unsafe("mem", 0600, dir, NULL, &mem_fops);
	debugfs_create_file("rogue_off", 0200, dir, NULL, &rogue_off_fops);
	pr_info("loaded: %zu attacks\n", ARRAY_SIZE(attacks));
	return 0;
}

static void __exit kserv_attack_exit(void)
{
	debugfs_remove(dir);
}

module_init(kserv_attack_init);
module_exit(kserv_attack_exit);
MODULE_DESCRIPTION("KServ attack suite against KCore (test images only)");
MODULE_LICENSE("Dual MIT/GPL");
