#include <stdio.h>

// Swift 6 refuses to name C's `stdout` (a global variable it cannot prove concurrency-safe), and
// `print` writes through it: the CLI checks here, once, that what it printed reached its destination.

/// Flushes stdout; nonzero when this flush or an earlier write to stdout failed (errno says why for
/// the flush).
static inline int earshot_stdout_failed(void) {
    return fflush(stdout) != 0 || ferror(stdout) != 0;
}
