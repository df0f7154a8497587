/*
 * insn_profile: a QEMU TCG plugin that counts guest instructions per
 * translation block between two marker instructions, for the breakdowns in
 * docs/benchmarks.md.
 *
 * `HINT #100` (0xd5032c9f) starts a window and `HINT #101` (0xd5032cbf)
 * ends it; both are NOPs to the CPU. The test guest's bench program
 * executes them around each benchmark's timed loop. At the end of window N
 * the plugin writes `<out>.N`: one line per block executed in the window,
 * `vaddr haddr instructions executions` (hex, hex, decimal, decimal).
 * Counting is by block entry, so a block left early by an exception counts
 * whole: close enough for where the instructions go.
 *
 * Debian's QEMU is built with plugin support but ships no qemu-plugin.h, so
 * the few entry points used are declared here (QEMU's plugin API, version 2
 * and later, as QEMU 10 exports it).
 *
 * Build: cc -O2 -shared -fPIC -o insn_profile.so insn_profile.c
 * Use:   qemu-system-aarch64 -plugin ./insn_profile.so,out=/tmp/prof ...
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb_t)(unsigned int vcpu, void *userdata);
typedef void (*udata_cb_t)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
size_t qemu_plugin_insn_data(const struct qemu_plugin_insn *insn, void *dest, size_t len);
void *qemu_plugin_insn_haddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb_t cb,
					  enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, vcpu_udata_cb_t cb,
					    enum qemu_plugin_cb_flags flags, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb_t cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 2;

#define MARK_ON 0xd5032c9fu
#define MARK_OFF 0xd5032cbfu
#define SLOTS (1u << 20)

/* One translated block: where it is, its size, its executions this window. */
struct block {
	uint64_t vaddr, haddr, insns, count;
};

static struct block *blocks;
static bool full;
static bool counting;	/* icount runs one vCPU at a time: no locking */
static unsigned long windows;
static const char *out = "insn_profile";

static struct block *block_for(uint64_t vaddr, uint64_t haddr, uint64_t insns)
{
	uint64_t k = (vaddr * 0x9e3779b97f4a7c15ull) ^ haddr ^ (insns << 7);
	uint32_t i = (uint32_t)(k >> 40) & (SLOTS - 1);

	for (uint32_t tries = 0; tries < SLOTS; tries++, i = (i + 1) & (SLOTS - 1)) {
		struct block *b = &blocks[i];

		if (!b->insns) {
			*b = (struct block){ vaddr, haddr, insns, 0 };
			return b;
		}
		if (b->vaddr == vaddr && b->haddr == haddr && b->insns == insns)
			return b;
	}
	full = true;
	return NULL;
}

static void on_block(unsigned int vcpu, void *b)
{
	if (counting)
		((struct block *)b)->count++;
}

static void on_mark(unsigned int vcpu, void *unused)
{
	counting = true;
	windows++;
}

static void off_mark(unsigned int vcpu, void *unused)
{
	char path[4096];
	FILE *f;

	if (!counting)
		return;
	counting = false;
	snprintf(path, sizeof(path), "%s.%lu", out, windows);
	f = fopen(path, "w");
	for (uint32_t i = 0; i < SLOTS; i++) {
		struct block *b = &blocks[i];

		if (!b->count)
			continue;
		if (f)
			fprintf(f, "%llx %llx %llu %llu\n", (unsigned long long)b->vaddr,
				(unsigned long long)b->haddr, (unsigned long long)b->insns,
				(unsigned long long)b->count);
		b->count = 0;
	}
	if (f)
		fclose(f);
	else
		fprintf(stderr, "insn_profile: cannot write %s\n", path);
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	size_t n = qemu_plugin_tb_n_insns(tb);
	struct qemu_plugin_insn *first = qemu_plugin_tb_get_insn(tb, 0);
	struct block *b = block_for(qemu_plugin_tb_vaddr(tb),
				    (uint64_t)(uintptr_t)qemu_plugin_insn_haddr(first), n);

	if (b)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block, QEMU_PLUGIN_CB_NO_REGS, b);
	for (size_t k = 0; k < n; k++) {
		struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, k);
		uint32_t w = 0;

		if (qemu_plugin_insn_data(insn, &w, sizeof(w)) != sizeof(w))
			continue;
		if (w == MARK_ON)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
		else if (w == MARK_OFF)
			qemu_plugin_register_vcpu_insn_exec_cb(insn, off_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
	}
}

static void at_exit(qemu_plugin_id_t id, void *unused)
{
	if (full)
		fprintf(stderr, "insn_profile: block table full; some blocks not counted\n");
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
	for (int i = 0; i < argc; i++)
		if (!strncmp(argv[i], "out=", 4))
			out = argv[i] + 4;
	blocks = calloc(SLOTS, sizeof(*blocks));
	if (!blocks)
		return -1;
	qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
