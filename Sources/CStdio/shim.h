#include <stdio.h>

// Swift 6 refuses to name C's `stdout` (a global variable it cannot prove concurrency-safe), and
// `print` writes through it: the CLI checks here, once, that what it printed reached its destination.

/// Flushes stdout: 0 when everything written reached it, 1 when this flush failed (errno says why),
/// 2 when an earlier write failed (errno no longer says why).
static inline int earshot_stdout_failed(void) {
    if (fflush(stdout) != 0) return 1;
    return ferror(stdout) ? 2 : 0;
}
