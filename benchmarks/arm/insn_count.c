/* A qemu user-mode TCG plugin that counts executed guest instructions: the
 * total, and per function (the symbol qemu finds for the first instruction of
 * each translation block; a static, unstripped binary has them all).
 * Written to a file at exit: "total N", then "N symbol" lines, largest first.
 *
 *   cc -shared -fPIC -O2 -I DIR_WITH_qemu-plugin.h insn_count.c -o insn_count.so
 *   qemu-aarch64 -plugin ./insn_count.so,out=counts.txt ./program args
 *
 * qemu-plugin.h is qemu's public plugin API (include/qemu/ in qemu's source,
 * `apt-get source qemu` on Debian). Counts are exact for single-threaded
 * guests: the inline adds are not atomic across vCPU threads.
 */
#include <inttypes.h>
#include <qemu-plugin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

enum { kMaxSymbols = 1 << 14 };

typedef struct {
  const char *name; /* qemu's string, stable for the run; NULL: unknown */
  uint64_t count;
} Counter;

static Counter counters[kMaxSymbols];
static int n_counters;
static uint64_t total;
static char out_path[4096] = "insn_count.txt";

/* Symbol names from qemu's table are interned: compare the text, not pointers. */
static uint64_t *counter_for(const char *name) {
  for (int i = 0; i < n_counters; ++i) {
    const char *n = counters[i].name;
    if ((n == NULL && name == NULL) || (n && name && strcmp(n, name) == 0)) return &counters[i].count;
  }
  if (n_counters == kMaxSymbols) return &counters[kMaxSymbols - 1].count; /* overflow bucket */
  counters[n_counters].name = name;
  return &counters[n_counters++].count;
}

static void on_tb_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
  (void)id;
  const size_t n = qemu_plugin_tb_n_insns(tb);
  if (n == 0) return;
  const char *sym = qemu_plugin_insn_symbol(qemu_plugin_tb_get_insn(tb, 0));
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &total, n);
  qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, counter_for(sym), n);
}

static int by_count_desc(const void *a, const void *b) {
  const uint64_t x = ((const Counter *)a)->count, y = ((const Counter *)b)->count;
  return x < y ? 1 : x > y ? -1 : 0;
}

static void write_counts(qemu_plugin_id_t id, void *p) {
  (void)id;
  (void)p;
  FILE *f = fopen(out_path, "w");
  if (!f) return;
  qsort(counters, (size_t)n_counters, sizeof(Counter), by_count_desc);
  fprintf(f, "total %" PRIu64 "\n", total);
  for (int i = 0; i < n_counters; ++i)
    if (counters[i].count)
      fprintf(f, "%" PRIu64 " %s\n", counters[i].count, counters[i].name ? counters[i].name : "?");
  fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
                                           char **argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "out=", 4) == 0) {
      snprintf(out_path, sizeof(out_path), "%s", argv[i] + 4);
    } else {
      fprintf(stderr, "insn_count: unknown argument %s (expected out=FILE)\n", argv[i]);
      return -1;
    }
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_tb_translate);
  qemu_plugin_register_atexit_cb(id, write_counts, NULL);
  return 0;
}
