// SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0
/*
 * kserv_kvm.c - /dev/kvm: the kernel side of the KVM API that kserv-core's
 * kvm module implements on top of KCore.
 *
 * KServ's own KVM fails to initialise at EL1, so the misc device "kvm"
 * (minor KVM_MINOR) is free; this file registers it and does what needs
 * the kernel: the fds (anon inodes for VMs, vCPUs and the vGIC device),
 * the objects' memory and lifetimes, user memory (copies, pinning), the
 * mmap'd struct kvm_run, locks, sleeping vCPU threads and kicking them out
 * of the guest. Every decision (ioctl decoding, errnos, the VM and vCPU
 * logic, the vGIC, PSCI) is the Rust core's.
 *
 * Lifetimes as in KVM: a VM lives while its fd or any of its vCPU or device
 * fds is open (each holds a reference); the last close tears it down in
 * KCore and takes every page back. A vCPU thread in KVM_RUN holds its
 * vCPU's fd, so teardown never races a running vCPU. ioctls from another
 * process than the VM's creator are EIO, as in KVM.
 *
 * Eventfds (KVM_IOEVENTFD, KVM_IRQFD): the core keeps the tables and holds
 * one eventfd_ctx reference per entry; an irqfd's hook here sits on its
 * eventfd's wait queue (first, exclusive, as KVM's) and turns each signal
 * into a work item that calls the core's injection. Detaching unhooks it
 * and waits for that work, so teardown (which detaches every irqfd first)
 * never races an injection.
 */
#define pr_fmt(fmt) "kserv-shim: " fmt

#include <linux/anon_inodes.h>
#include <linux/atomic.h>
#include <linux/clocksource_ids.h>
#include <linux/cpumask.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/math64.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/timekeeping.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <asm/arch_timer.h>
#include <asm/cpufeature.h>
#include <asm/cputype.h>
#include <asm/sysreg.h>

#include "kserv_core.h"

#ifndef KVM_MINOR
#define KVM_MINOR 232
#endif

struct kkvm_vcpu;

struct kkvm_vm {
	refcount_t ref;
	struct mm_struct *mm;		/* the creator's: only it may issue ioctls */
	struct mutex lock;		/* the core's Lock::Vm */
	spinlock_t gic_lock;		/* the core's Lock::Gic */
	struct mutex create_lock;	/* vcpus[] */
	struct kkvm_vcpu **vcpus;	/* by id, max_vcpus of them */
	void *core;
	u32 pid;			/* the creator's, for the stats' id string */
};

struct kkvm_vcpu {
	struct kkvm_vm *vm;
	u32 id;
	struct mutex mutex;		/* one ioctl at a time */
	wait_queue_head_t wq;
	atomic_t kick;			/* a kick since its last wait */
	int cpu;			/* the CPU it runs the guest on, or -1 */
	struct page *run;		/* struct kvm_run, mmap'd by the VMM */
	void *core;
	u32 poll_ns;			/* its halt-polling window now */
};

/* What every core call gets back as its context. */
struct kkvm_ctx {
	struct kkvm_vm *vm;
	struct kkvm_vcpu *vcpu;
};

static struct kserv_kvm_sizes kkvm_sizes;
static u32 kkvm_ipa_limit;
static u64 kkvm_freq;
static bool kkvm_registered;

static void kkvm_host(struct kserv_kvm_host *h)
{
	h->ipa_limit = kkvm_ipa_limit;
	h->online_cpus = num_online_cpus();
	h->midr = read_cpuid_id();
	h->user_limit = TASK_SIZE_MAX;
	h->dfr0 = read_sanitised_ftr_reg(SYS_ID_AA64DFR0_EL1);
	h->pfr0 = read_sanitised_ftr_reg(SYS_ID_AA64PFR0_EL1);
}

/* ---- callbacks for the core ---------------------------------------------- */

s32 kserv_glue_kvm_copy_from_user(void *ctx, u64 uaddr, u8 *buf, u32 len)
{
	return copy_from_user(buf, (const void __user *)(uintptr_t)uaddr, len) ? EFAULT : 0;
}

s32 kserv_glue_kvm_copy_to_user(void *ctx, u64 uaddr, const u8 *data, u32 len)
{
	return copy_to_user((void __user *)(uintptr_t)uaddr, data, len) ? EFAULT : 0;
}

s32 kserv_glue_kvm_pin(void *ctx, u64 uaddr, u32 write, u64 *pfn)
{
	struct kkvm_ctx *c = ctx;
	struct page *page;
	int n;

	/* Pinning uses current->mm: it must be the VM's. */
	if (current->mm != c->vm->mm)
		return EFAULT;
	n = pin_user_pages_fast(uaddr, 1, FOLL_LONGTERM | (write ? FOLL_WRITE : 0), &page);
	if (n != 1)
		return EFAULT;
	*pfn = page_to_pfn(page);
	return 0;
}

void kserv_glue_kvm_unpin(u64 pfn)
{
	struct page *page;

	if (WARN_ONCE(!pfn_valid(pfn), "kserv-shim: kvm: unpin of pfn %#llx\n", pfn))
		return;
	page = pfn_to_page(pfn);
	/* The guest may have written it. */
	unpin_user_pages_dirty_lock(&page, 1, true);
}

u64 kserv_glue_kvm_alloc_array(u64 words)
{
	if (words > SIZE_MAX / 8)
		return 0;
	return (u64)(uintptr_t)kvzalloc(words * 8, GFP_KERNEL_ACCOUNT);
}

void kserv_glue_kvm_free_array(u64 addr)
{
	kvfree((void *)(uintptr_t)addr);
}

/* Largest block kserv_glue_kvm_alloc_pages hands out (the core asks for 4 pages). */
#define KKVM_MAX_ORDER 4

/* The linear-map address of a page the core holds, checked. */
static u8 *kkvm_page_addr(u64 pfn, u32 offset, u32 len)
{
	if (WARN_ONCE(!pfn_valid(pfn) || offset > PAGE_SIZE || len > PAGE_SIZE - offset,
		      "kserv-shim: kvm: bad access to pfn %#llx +%u len %u\n", pfn, offset, len))
		return NULL;
	return (u8 *)page_address(pfn_to_page(pfn)) + offset;
}

u64 kserv_glue_kvm_alloc_pages(void *ctx, u32 order)
{
	struct page *p;

	if (order > KKVM_MAX_ORDER)
		return 0;
	p = alloc_pages(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, order);
	if (!p)
		return 0;
	/* Each page can be freed alone from now on. */
	if (order)
		split_page(p, order);
	return page_to_pfn(p);
}

void kserv_glue_kvm_free_page(void *ctx, u64 pfn)
{
	if (!WARN_ONCE(!pfn_valid(pfn), "kserv-shim: kvm: free of pfn %#llx\n", pfn))
		__free_page(pfn_to_page(pfn));
}

void kserv_glue_kvm_page_write(void *ctx, u64 pfn, u32 offset, const u8 *data, u32 len)
{
	u8 *dst = kkvm_page_addr(pfn, offset, len);

	if (dst)
		memcpy(dst, data, len);
}

void kserv_glue_kvm_page_read(void *ctx, u64 pfn, u32 offset, u8 *buf, u32 len)
{
	const u8 *src = kkvm_page_addr(pfn, offset, len);

	if (src)
		memcpy(buf, src, len);
	else
		memset(buf, 0, len);
}

u64 kserv_glue_kvm_now(void)
{
	return __arch_counter_get_cntpct();
}

u32 kserv_glue_kvm_cpu(void)
{
	return raw_smp_processor_id();
}

void kserv_glue_kvm_relax(void)
{
	cond_resched();
}

void kserv_glue_kvm_fence(void)
{
	smp_mb();
}

u64 kserv_glue_kvm_random(void)
{
	return get_random_u64();
}

u32 kserv_glue_kvm_ptp(u64 *real, u64 *cycles)
{
	struct system_time_snapshot snap;

	ktime_get_snapshot(&snap);
	if (snap.cs_id != CSID_ARM_ARCH_COUNTER)
		return 0;
	*real = ktime_to_ns(snap.real);
	*cycles = snap.cycles;
	return 1;
}

u32 kserv_glue_kvm_ccsidr(u32 csselr)
{
	unsigned long flags;
	u32 ccsidr;

	/* Nothing else on this CPU may select another cache meanwhile. */
	local_irq_save(flags);
	write_sysreg(csselr, csselr_el1);
	isb();
	ccsidr = read_sysreg(ccsidr_el1);
	local_irq_restore(flags);
	return ccsidr;
}

u64 kserv_glue_kvm_run_delay(void)
{
#ifdef CONFIG_SCHED_INFO
	return READ_ONCE(current->sched_info.run_delay);
#else
	return 0;
#endif
}

static u8 *kkvm_run_addr(struct kkvm_ctx *c, u32 offset, u32 len)
{
	if (WARN_ONCE(!c->vcpu || offset > sizeof(struct kvm_run) ||
		      len > sizeof(struct kvm_run) - offset,
		      "kserv-shim: kvm: bad kvm_run access +%u len %u\n", offset, len))
		return NULL;
	return (u8 *)page_address(c->vcpu->run) + offset;
}

void kserv_glue_kvm_run_read(void *ctx, u32 offset, u8 *buf, u32 len)
{
	u8 *src = kkvm_run_addr(ctx, offset, len);

	if (src)
		memcpy(buf, src, len);
	else
		memset(buf, 0, len);
}

void kserv_glue_kvm_run_write(void *ctx, u32 offset, const u8 *data, u32 len)
{
	u8 *dst = kkvm_run_addr(ctx, offset, len);

	if (dst)
		memcpy(dst, data, len);
}

void kserv_glue_kvm_lock(void *ctx, u32 which)
{
	struct kkvm_ctx *c = ctx;

	if (which)
		spin_lock(&c->vm->gic_lock);
	else
		mutex_lock(&c->vm->lock);
}

void kserv_glue_kvm_unlock(void *ctx, u32 which)
{
	struct kkvm_ctx *c = ctx;

	if (which)
		spin_unlock(&c->vm->gic_lock);
	else
		mutex_unlock(&c->vm->lock);
}

u32 kserv_glue_kvm_signal_pending(void)
{
	return signal_pending(current);
}

/*
 * Halt polling, as KVM's (virt/kvm/kvm_main.c, with its defaults for arm64):
 * before a vCPU's thread sleeps for its guest's WFI it watches for a kick
 * for a while, so a wake-up that comes soon (an IPI from another vCPU, an
 * interrupt the VMM injects) costs neither a sleep nor a trip through the
 * scheduler. Each vCPU's window adapts: it starts at nothing, grows
 * (from 10 us, doubling) while wake-ups come within the longest window, and
 * drops to nothing when a wait outlasts it. 0 turns polling off. A VM's
 * KVM_CAP_HALT_POLL replaces the parameter for its vCPUs (the core passes it).
 */
static unsigned int halt_poll_ns = 500000;
module_param(halt_poll_ns, uint, 0644);
MODULE_PARM_DESC(halt_poll_ns, "longest halt-polling window in ns (0: off)");

static u64 kkvm_ns_to_ticks(u64 ns)
{
	return div64_u64(ns * kkvm_freq, NSEC_PER_SEC);
}

/* Polls for a kick until `end` (counter); true if one came. */
static bool kkvm_poll(struct kkvm_vcpu *v, u64 end)
{
	while (__arch_counter_get_cntpct() < end) {
		if (atomic_read_acquire(&v->kick))
			return true;
		if (signal_pending(current) || need_resched())
			return false;
		cpu_relax();
	}
	return atomic_read_acquire(&v->kick);
}

void kserv_glue_kvm_wait(void *ctx, u64 deadline, u64 max_poll_ns)
{
	struct kkvm_vcpu *v = ((struct kkvm_ctx *)ctx)->vcpu;
	u64 now = __arch_counter_get_cntpct();
	u64 start = now;
	u64 max = max_poll_ns == U64_MAX ? READ_ONCE(halt_poll_ns) : max_poll_ns;
	u64 ns, waited;

	if (!v || deadline <= now)
		return;
	if (v->poll_ns > max)
		v->poll_ns = max;
	if (v->poll_ns && kkvm_poll(v, min(deadline, now + kkvm_ns_to_ticks(v->poll_ns)))) {
		atomic_set(&v->kick, 0);
		return;
	}
	now = __arch_counter_get_cntpct();
	if (deadline > now) {
		/* At most a second at a time: the core checks and waits again. */
		ns = div64_u64(min(deadline - now, kkvm_freq) * NSEC_PER_SEC, kkvm_freq);
		wait_event_interruptible_hrtimeout(v->wq, atomic_read_acquire(&v->kick),
						   ns_to_ktime(ns));
	}
	atomic_set(&v->kick, 0);
	/* Adapt the window to how long this wait was. */
	waited = div64_u64((__arch_counter_get_cntpct() - start) * NSEC_PER_SEC, kkvm_freq);
	if (waited > max)
		v->poll_ns = 0;
	else if (v->poll_ns < max)
		v->poll_ns = min_t(u64, max, v->poll_ns ? 2 * (u64)v->poll_ns : 10000);
}

static void kkvm_nop(void *unused)
{
}

void kserv_glue_kvm_kick(void *ctx, u32 id)
{
	struct kkvm_vm *vm = ((struct kkvm_ctx *)ctx)->vm;
	struct kkvm_vcpu *v;
	int cpu, me;

	if (id >= kkvm_sizes.max_vcpus)
		return;
	v = READ_ONCE(vm->vcpus[id]);
	if (!v)
		return;
	atomic_set_release(&v->kick, 1);
	wake_up_interruptible(&v->wq);
	/* Pairs with the barrier in enter_guest: it sees the kick or we its CPU. */
	smp_mb();
	cpu = READ_ONCE(v->cpu);
	me = get_cpu();
	/* Any interrupt ends the guest's run; the thread then sees the kick. */
	if (cpu >= 0 && cpu != me)
		smp_call_function_single(cpu, kkvm_nop, NULL, 0);
	put_cpu();
}

void kserv_glue_kvm_enter_guest(void *ctx)
{
	struct kkvm_vcpu *v = ((struct kkvm_ctx *)ctx)->vcpu;

	local_irq_disable();
	WRITE_ONCE(v->cpu, smp_processor_id());
	smp_mb();
}

void kserv_glue_kvm_leave_guest(void *ctx)
{
	struct kkvm_vcpu *v = ((struct kkvm_ctx *)ctx)->vcpu;

	WRITE_ONCE(v->cpu, -1);
	local_irq_enable();
}

void kserv_glue_kvm_log(const char *line, u32 len)
{
	pr_info("kvm: %.*s\n", (int)len, line);
}

/* ---- eventfds ------------------------------------------------------------- */

s32 kserv_glue_kvm_eventfd_get(s32 fd, u64 *eventfd)
{
	/* ERR_PTR(-EBADF) for no such fd, -EINVAL for another kind of file. */
	struct eventfd_ctx *e = eventfd_ctx_fdget(fd);

	if (IS_ERR(e))
		return -PTR_ERR(e);
	*eventfd = (u64)(uintptr_t)e;
	return 0;
}

void kserv_glue_kvm_eventfd_put(u64 eventfd)
{
	eventfd_ctx_put((struct eventfd_ctx *)(uintptr_t)eventfd);
}

void kserv_glue_kvm_eventfd_signal(u64 eventfd)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	eventfd_signal((struct eventfd_ctx *)(uintptr_t)eventfd);
#else
	eventfd_signal((struct eventfd_ctx *)(uintptr_t)eventfd, 1);
#endif
}

struct kkvm_irqfd {
	struct kkvm_vm *vm;
	struct eventfd_ctx *eventfd;	/* the core's reference */
	u32 gsi;
	u32 resample;
	wait_queue_entry_t wait;
	poll_table pt;
	struct work_struct inject;
};

static void kkvm_irqfd_inject(struct work_struct *work)
{
	struct kkvm_irqfd *q = container_of(work, struct kkvm_irqfd, inject);
	struct kkvm_ctx ctx = { .vm = q->vm };

	kserv_core_kvm_irqfd_inject(&ctx, q->vm->core, q->gsi, q->resample);
}

/* Called with the eventfd's wait queue lock held and interrupts off. */
static int kkvm_irqfd_wakeup(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct kkvm_irqfd *q = container_of(wait, struct kkvm_irqfd, wait);
	u64 count;

	if (!(key_to_poll(key) & EPOLLIN))
		/*
		 * EPOLLHUP: the eventfd's file is closing. The hook holds the
		 * eventfd itself and stays until deassignment or teardown.
		 */
		return 0;
	eventfd_ctx_do_read(q->eventfd, &count);
	schedule_work(&q->inject);
	return 1;
}

static void kkvm_irqfd_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct kkvm_irqfd *q = container_of(pt, struct kkvm_irqfd, pt);

	add_wait_queue_priority(wqh, &q->wait);
}

s32 kserv_glue_kvm_irqfd_attach(void *ctx, s32 fd, u64 eventfd, u32 gsi, u32 resample, u64 *hook)
{
	struct kkvm_ctx *c = ctx;
	struct eventfd_ctx *e;
	struct kkvm_irqfd *q;
	struct file *file;
	__poll_t events;

	file = fget(fd);
	if (!file)
		return EBADF;
	/* The fd may have changed since the core took its eventfd. */
	e = eventfd_ctx_fileget(file);
	if (IS_ERR(e)) {
		fput(file);
		return EINVAL;
	}
	eventfd_ctx_put(e);
	if ((u64)(uintptr_t)e != eventfd) {
		fput(file);
		return EINVAL;
	}
	q = kzalloc(sizeof(*q), GFP_KERNEL_ACCOUNT);
	if (!q) {
		fput(file);
		return ENOMEM;
	}
	q->vm = c->vm;
	q->eventfd = e;
	q->gsi = gsi;
	q->resample = resample;
	INIT_WORK(&q->inject, kkvm_irqfd_inject);
	init_waitqueue_func_entry(&q->wait, kkvm_irqfd_wakeup);
	init_poll_funcptr(&q->pt, kkvm_irqfd_queue);
	/* Hooks it; a signal from before counts as one now (as in KVM). */
	events = vfs_poll(file, &q->pt);
	if (events & EPOLLIN)
		schedule_work(&q->inject);
	fput(file);
	*hook = (u64)(uintptr_t)q;
	return 0;
}

void kserv_glue_kvm_irqfd_detach(u64 hook)
{
	struct kkvm_irqfd *q = (struct kkvm_irqfd *)(uintptr_t)hook;
	u64 count;

	eventfd_ctx_remove_wait_queue(q->eventfd, &q->wait, &count);
	/* No new work can come; wait for what is queued or running. */
	flush_work(&q->inject);
	kfree(q);
}

/* ---- VMs ------------------------------------------------------------------ */

static void kkvm_vm_put(struct kkvm_vm *vm)
{
	struct kkvm_ctx ctx = { .vm = vm };
	u64 released, kept = 0;
	u32 i;

	if (!refcount_dec_and_test(&vm->ref))
		return;
	released = kserv_core_kvm_vm_destroy(&ctx, vm->core, &kept);
	for (i = 0; i < kkvm_sizes.max_vcpus; i++) {
		struct kkvm_vcpu *v = vm->vcpus[i];

		if (!v)
			continue;
		ctx.vcpu = v;
		kserv_core_kvm_vcpu_destroy(&ctx, v->core);
		kvfree(v->core);
		__free_page(v->run);
		kfree(v);
	}
	if (kept)
		pr_warn("kvm: VM torn down, %llu pages back, %llu kept (KCore did not give them back)\n",
			released, kept);
	else
		pr_info("kvm: VM torn down, %llu pages back\n", released);
	kvfree(vm->core);
	kfree(vm->vcpus);
	mmdrop(vm->mm);
	kfree(vm);
	module_put(THIS_MODULE);
}

/* ---- KVM_GET_STATS_FD ------------------------------------------------------ */

/* A stats fd: the VM's (vcpu < 0) or one of its vCPUs'; it holds the VM. */
struct kkvm_stats {
	struct kkvm_vm *vm;
	s32 vcpu;
};

static ssize_t kkvm_stats_read(struct file *file, char __user *buf, size_t size, loff_t *pos)
{
	struct kkvm_stats *s = file->private_data;
	struct kkvm_ctx ctx = { .vm = s->vm };
	s64 r;

	r = kserv_core_kvm_stats_read(&ctx, s->vm->core, s->vm->pid, s->vcpu, *pos,
				      (u64)(uintptr_t)buf, size);
	if (r > 0)
		*pos += r;
	return r;
}

static int kkvm_stats_release(struct inode *inode, struct file *file)
{
	struct kkvm_stats *s = file->private_data;

	kkvm_vm_put(s->vm);
	kfree(s);
	return 0;
}

static const struct file_operations kkvm_stats_fops = {
	.owner = THIS_MODULE,
	.read = kkvm_stats_read,
	.release = kkvm_stats_release,
	.llseek = noop_llseek,
};

static int kkvm_stats_fd(struct kkvm_vm *vm, s32 vcpu)
{
	struct kkvm_stats *s;
	struct file *file;
	int fd;

	s = kzalloc(sizeof(*s), GFP_KERNEL_ACCOUNT);
	if (!s)
		return -ENOMEM;
	s->vm = vm;
	s->vcpu = vcpu;
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		kfree(s);
		return fd;
	}
	file = anon_inode_getfile(vcpu < 0 ? "kvm-vm-stats" : "kvm-vcpu-stats",
				  &kkvm_stats_fops, s, O_RDONLY);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		kfree(s);
		return PTR_ERR(file);
	}
	refcount_inc(&vm->ref);
	/* pread(2) at the offsets the header gives, as KVM's stats fds. */
	file->f_mode |= FMODE_PREAD;
	fd_install(fd, file);
	return fd;
}

static long kkvm_vcpu_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kkvm_vcpu *v = file->private_data;
	struct kkvm_ctx ctx = { .vm = v->vm, .vcpu = v };
	struct kserv_kvm_host host;
	long r;

	if (current->mm != v->vm->mm)
		return -EIO;
	if (cmd == KVM_GET_STATS_FD)
		return kkvm_stats_fd(v->vm, v->id);
	if (mutex_lock_killable(&v->mutex))
		return -EINTR;
	kkvm_host(&host);
	r = kserv_core_kvm_vcpu_ioctl(&ctx, &host, v->vm->core, v->core, cmd, arg);
	mutex_unlock(&v->mutex);
	return r;
}

static vm_fault_t kkvm_vcpu_fault(struct vm_fault *vmf)
{
	struct kkvm_vcpu *v = vmf->vma->vm_file->private_data;

	if (vmf->pgoff != 0)
		return VM_FAULT_SIGBUS;
	get_page(v->run);
	vmf->page = v->run;
	return 0;
}

static const struct vm_operations_struct kkvm_vcpu_vm_ops = {
	.fault = kkvm_vcpu_fault,
};

static int kkvm_vcpu_mmap(struct file *file, struct vm_area_struct *vma)
{
	/* The vCPU's mmap size is one page: struct kvm_run. */
	if (vma->vm_pgoff != 0 || vma_pages(vma) > 1)
		return -EINVAL;
	vma->vm_ops = &kkvm_vcpu_vm_ops;
	return 0;
}

static int kkvm_vcpu_release(struct inode *inode, struct file *file)
{
	struct kkvm_vcpu *v = file->private_data;

	kkvm_vm_put(v->vm);
	return 0;
}

static const struct file_operations kkvm_vcpu_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kkvm_vcpu_ioctl,
	.mmap = kkvm_vcpu_mmap,
	.release = kkvm_vcpu_release,
	.llseek = noop_llseek,
};

static int kkvm_create_vcpu(struct kkvm_vm *vm, unsigned long id)
{
	struct kkvm_ctx ctx = { .vm = vm };
	struct kkvm_vcpu *v;
	char name[24];
	s64 r;
	int fd;

	r = kserv_core_kvm_vcpu_reserve(&ctx, vm->core, id);
	if (r)
		return r;
	v = kzalloc(sizeof(*v), GFP_KERNEL_ACCOUNT);
	if (v) {
		v->core = kvzalloc(kkvm_sizes.vcpu, GFP_KERNEL_ACCOUNT);
		v->run = alloc_page(GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	}
	if (!v || !v->core || !v->run) {
		r = -ENOMEM;
		goto fail;
	}
	v->vm = vm;
	v->id = id;
	v->cpu = -1;
	mutex_init(&v->mutex);
	init_waitqueue_head(&v->wq);
	atomic_set(&v->kick, 0);
	/* Visible to kicks from now on (the core kicks only created vCPUs). */
	mutex_lock(&vm->create_lock);
	WRITE_ONCE(vm->vcpus[id], v);
	mutex_unlock(&vm->create_lock);
	ctx.vcpu = v;
	r = kserv_core_kvm_vcpu_create(&ctx, vm->core, v->core, id);
	if (r) {
		mutex_lock(&vm->create_lock);
		WRITE_ONCE(vm->vcpus[id], NULL);
		mutex_unlock(&vm->create_lock);
		goto fail_unreserved;
	}
	refcount_inc(&vm->ref);
	snprintf(name, sizeof(name), "kvm-vcpu:%lu", id);
	fd = anon_inode_getfd(name, &kkvm_vcpu_fops, v, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		/* The vCPU stays with the VM, as in KVM, and goes with it. */
		kkvm_vm_put(vm);
	return fd;

fail:
	kserv_core_kvm_vcpu_unreserve(&ctx, vm->core, id);
fail_unreserved:
	if (v) {
		kvfree(v->core);
		if (v->run)
			__free_page(v->run);
		kfree(v);
	}
	return r;
}

static int kkvm_device_release(struct inode *inode, struct file *file)
{
	kkvm_vm_put(file->private_data);
	return 0;
}

static long kkvm_device_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kkvm_vm *vm = file->private_data;
	struct kkvm_ctx ctx = { .vm = vm };

	if (current->mm != vm->mm)
		return -EIO;
	return kserv_core_kvm_device_ioctl(&ctx, vm->core, cmd, arg);
}

static const struct file_operations kkvm_device_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kkvm_device_ioctl,
	.release = kkvm_device_release,
	.llseek = noop_llseek,
};

static long kkvm_its_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kkvm_vm *vm = file->private_data;
	struct kkvm_ctx ctx = { .vm = vm };

	if (current->mm != vm->mm)
		return -EIO;
	return kserv_core_kvm_its_ioctl(&ctx, vm->core, cmd, arg);
}

/* The ITS's device fd: the same lifetime as the vGIC's, its own ioctls. */
static const struct file_operations kkvm_its_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kkvm_its_ioctl,
	.release = kkvm_device_release,
	.llseek = noop_llseek,
};

static int kkvm_create_device(struct kkvm_vm *vm, void __user *argp)
{
	struct kkvm_ctx ctx = { .vm = vm };
	struct kvm_create_device cd;
	s64 r;
	int fd;

	if (copy_from_user(&cd, argp, sizeof(cd)))
		return -EFAULT;
	r = kserv_core_kvm_device_create(&ctx, vm->core, cd.type, cd.flags);
	if (r <= 0)
		return r;
	refcount_inc(&vm->ref);
	if (r == 2)
		fd = anon_inode_getfd("kvm-arm-vgic-its", &kkvm_its_fops, vm, O_RDWR | O_CLOEXEC);
	else
		fd = anon_inode_getfd("kvm-arm-vgic-v3", &kkvm_device_fops, vm, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		kkvm_vm_put(vm);
		return fd;
	}
	cd.fd = fd;
	if (copy_to_user(argp, &cd, sizeof(cd)))
		return -EFAULT;
	return 0;
}

static long kkvm_vm_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kkvm_vm *vm = file->private_data;
	struct kkvm_ctx ctx = { .vm = vm };
	struct kserv_kvm_host host;

	if (current->mm != vm->mm)
		return -EIO;
	switch (cmd) {
	case KVM_CREATE_VCPU:
		return kkvm_create_vcpu(vm, arg);
	case KVM_CREATE_DEVICE:
		return kkvm_create_device(vm, (void __user *)arg);
	case KVM_GET_STATS_FD:
		return kkvm_stats_fd(vm, -1);
	default:
		kkvm_host(&host);
		return kserv_core_kvm_vm_ioctl(&ctx, &host, vm->core, cmd, arg);
	}
}

static int kkvm_vm_release(struct inode *inode, struct file *file)
{
	kkvm_vm_put(file->private_data);
	return 0;
}

static const struct file_operations kkvm_vm_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kkvm_vm_ioctl,
	.release = kkvm_vm_release,
	.llseek = noop_llseek,
};

static int kkvm_create_vm(unsigned long type)
{
	struct kserv_kvm_host host;
	struct kkvm_ctx ctx;
	struct kkvm_vm *vm;
	s64 r;
	int fd;

	vm = kzalloc(sizeof(*vm), GFP_KERNEL_ACCOUNT);
	if (!vm)
		return -ENOMEM;
	vm->core = kvzalloc(kkvm_sizes.vm, GFP_KERNEL_ACCOUNT);
	vm->vcpus = kcalloc(kkvm_sizes.max_vcpus, sizeof(*vm->vcpus), GFP_KERNEL_ACCOUNT);
	if (!vm->core || !vm->vcpus) {
		kvfree(vm->core);
		kfree(vm->vcpus);
		kfree(vm);
		return -ENOMEM;
	}
	refcount_set(&vm->ref, 1);
	mutex_init(&vm->lock);
	mutex_init(&vm->create_lock);
	spin_lock_init(&vm->gic_lock);
	vm->mm = current->mm;
	vm->pid = task_pid_nr(current);
	mmgrab(vm->mm);
	/* Each VM pins the module until its teardown. */
	__module_get(THIS_MODULE);
	ctx.vm = vm;
	ctx.vcpu = NULL;
	kkvm_host(&host);
	r = kserv_core_kvm_vm_init(&ctx, &host, vm->core, type);
	if (r) {
		mmdrop(vm->mm);
		kvfree(vm->core);
		kfree(vm->vcpus);
		kfree(vm);
		module_put(THIS_MODULE);
		return r;
	}
	fd = anon_inode_getfd("kvm-vm", &kkvm_vm_fops, vm, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		kkvm_vm_put(vm);
	return fd;
}

static long kkvm_dev_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kserv_kvm_host host;

	if (cmd == KVM_CREATE_VM)
		return kkvm_create_vm(arg);
	kkvm_host(&host);
	return kserv_core_kvm_dev_ioctl(&host, cmd, arg);
}

static const struct file_operations kkvm_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kkvm_dev_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice kkvm_misc = {
	.minor = KVM_MINOR,
	.name = "kvm",
	.fops = &kkvm_dev_fops,
};

/* ---- registration --------------------------------------------------------- */

/* The IPA size ID_AA64MMFR0_EL1.PARange allows, at most 48 bits (KCore's). */
static u32 kkvm_parange_bits(void)
{
	static const u8 bits[] = { 32, 36, 40, 42, 44, 48, 52 };
	u64 mmfr0 = read_sysreg_s(SYS_ID_AA64MMFR0_EL1);
	u32 pa = mmfr0 & 0xf;

	return min_t(u32, pa < ARRAY_SIZE(bits) ? bits[pa] : 32, 48);
}

int kserv_kvm_init(void)
{
	const u64 values[KSERV_KVM_CHECKED] = {
		KVM_GET_API_VERSION,
		KVM_CREATE_VM,
		KVM_CHECK_EXTENSION,
		KVM_GET_VCPU_MMAP_SIZE,
		KVM_CREATE_VCPU,
		KVM_SET_USER_MEMORY_REGION,
		KVM_CREATE_IRQCHIP,
		KVM_IRQ_LINE,
		KVM_RUN,
		KVM_GET_ONE_REG,
		KVM_SET_ONE_REG,
		KVM_ARM_VCPU_INIT,
		KVM_ARM_PREFERRED_TARGET,
		KVM_GET_REG_LIST,
		KVM_CREATE_DEVICE,
		KVM_SET_DEVICE_ATTR,
		KVM_GET_DEVICE_ATTR,
		KVM_HAS_DEVICE_ATTR,
		KVM_IRQFD,
		KVM_IOEVENTFD,
		KVM_GET_MP_STATE,
		KVM_SET_MP_STATE,
		KVM_ENABLE_CAP,
		sizeof(struct kvm_run),
		offsetof(struct kvm_run, mmio.data),
		offsetof(struct kvm_run, mmio.len),
		offsetof(struct kvm_run, mmio.is_write),
		offsetof(struct kvm_run, system_event.ndata),
		offsetof(struct kvm_run, system_event.data),
		offsetof(struct kvm_run, internal.data),
		offsetof(struct kvm_run, fail_entry.cpu),
		KVM_REG_ARM_TIMER_CNT,
		KVM_REG_ARM_TIMER_CVAL,
		KVM_REG_ARM_PSCI_VERSION,
		KVM_REG_ARM64 | KVM_REG_SIZE_U32 | KVM_REG_ARM_CORE |
			KVM_REG_ARM_CORE_REG(fp_regs.fpsr),
		KVM_REG_ARM64 | KVM_REG_SIZE_U128 | KVM_REG_ARM_CORE |
			KVM_REG_ARM_CORE_REG(fp_regs.vregs[0]),
		KVM_GET_STATS_FD,
		sizeof(struct kvm_stats_header),
		offsetof(struct kvm_stats_desc, name),
		KVM_GET_DIRTY_LOG,
		KVM_CLEAR_DIRTY_LOG,
		KVM_SET_GUEST_DEBUG,
		offsetof(struct kvm_run, debug.arch.hsr_high),
		offsetof(struct kvm_run, debug.arch.far),
		KVM_GET_VCPU_EVENTS,
		KVM_SET_VCPU_EVENTS,
	};
	u32 bad;
	int ret;

	kserv_core_kvm_sizes(&kkvm_sizes);
	bad = kserv_core_kvm_check_uapi(values, ARRAY_SIZE(values));
	if (bad) {
		pr_err("kvm: the core's KVM ABI differs from this kernel's (value %u): no /dev/kvm\n",
		       bad);
		return -EINVAL;
	}
	kkvm_ipa_limit = kkvm_parange_bits();
	kkvm_freq = arch_timer_get_cntfrq() ?: 1;
	ret = misc_register(&kkvm_misc);
	if (ret) {
		pr_err("kvm: cannot register /dev/kvm (%d)\n", ret);
		return ret;
	}
	kkvm_registered = true;
	pr_info("kvm: /dev/kvm registered (IPA limit %u bits, %llu vCPUs per VM)\n",
		kkvm_ipa_limit, kkvm_sizes.max_vcpus);
	return 0;
}

void kserv_kvm_exit(void)
{
	if (kkvm_registered)
		misc_deregister(&kkvm_misc);
}
