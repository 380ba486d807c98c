#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFFTW

/// The one lock in front of FFTW's planner.
///
/// FFTW documents that only `fftwf_execute*` is thread-safe; creating and destroying plans mutates the
/// library's global planner state (wisdom, the plan cache). Frontends are created and dropped on many
/// threads (one per stream), so plan creation and destruction go through this process-wide lock: the
/// only shared mutable state in Features, forced on us by the C library. Executing an instance's own
/// plan on its own buffers needs no lock.
final class FFTWPlanner: @unchecked Sendable {  // @unchecked: every access to the mutex goes through withLock
    static let shared = FFTWPlanner()

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    private init() {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
    }

    func withLock<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }

    /// A real-to-complex plan of `n` points from `input` (n floats) to `output` (n/2 + 1 complex).
    /// FFTW_ESTIMATE: planning is instant and does not scribble over the buffers, and the chosen
    /// algorithm (hence every rounding) is the same in every process, which keeps features reproducible.
    func makeRealForwardPlan(n: Int, input: UnsafeMutablePointer<Float>,
                             output: UnsafeMutablePointer<fftwf_complex>) -> OpaquePointer {
        withLock {
            guard let plan = fftwf_plan_dft_r2c_1d(Int32(n), input, output, UInt32(FFTW_ESTIMATE)) else {
                fatalError("FFTW could not plan a \(n)-point real FFT")
            }
            return plan
        }
    }

    func destroy(_ plan: OpaquePointer) {
        withLock { fftwf_destroy_plan(plan) }
    }
}
