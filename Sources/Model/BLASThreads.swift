import CBLAS

/// Control of OpenBLAS's worker-thread count.
///
/// The count is process-global state inside OpenBLAS, so the library never changes it on its own:
/// Training wants every core for its large batched products, while inference runs small products
/// (a chunk of a few frames per stream) where waking worker threads costs more than it saves and
/// where several streams already run in parallel on their own threads. The program's entry point
/// (CLI command, daemon) decides once, at start-up: `BLASThreads.set(1)` for recognition.
public enum BLASThreads {
    /// Sets the number of OpenBLAS threads for the whole process (values below 1 mean 1).
    public static func set(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
    }

    /// The number of threads OpenBLAS currently uses.
    public static var current: Int { Int(openblas_get_num_threads()) }
}
