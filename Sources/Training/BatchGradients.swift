import Foundation
import Model
import Tensors

/// One training example: encoder input frames and the label ids of its transcript.
public struct TrainingExample: Sendable {
    /// Frames x channels (e.g. log-mel bins), row-major.
    public var features: Matrix
    public var labels: [Int]

    public init(features: Matrix, labels: [Int]) { self.features = features; self.labels = labels }
}

/// Summed loss and gradients over a batch, with the counts needed to normalise them.
public struct BatchGradients: Sendable {
    /// Sum of the CTC losses of the usable utterances.
    public var lossSum: Double
    /// Sum over the usable utterances of d loss / d parameter (trainable parameters only).
    public var gradients: [String: Tensor]
    /// Utterances that contributed (not impossible).
    public var utterances: Int
    /// Indices (into the batch) of utterances whose labels could not be aligned to their output frames;
    /// they contribute nothing (zero_infinity) and the trainer should report them.
    public var impossible: [Int]
    /// Encoder output frames over the usable utterances.
    public var outputFrames: Int

    /// Mean loss per usable utterance (0 when none).
    public var meanLoss: Double { utterances > 0 ? lossSum / Double(utterances) : 0 }

    /// The gradients divided by the number of usable utterances: the gradient of `meanLoss`.
    public func meanGradients() -> [String: Tensor] {
        guard utterances > 0 else { return gradients }
        let s = 1 / Float(utterances)
        return gradients.mapValues { Tensor(shape: $0.shape, data: $0.data.map { $0 * s }) }
    }
}

/// Adds `other` into `sum` element-wise (same names and shapes; names absent from `sum` are copied), e.g. to
/// accumulate gradients over several batches before one optimiser step.
public func accumulate(_ sum: inout [String: Tensor], _ other: [String: Tensor]) {
    for (name, t) in other {
        guard var s = sum[name] else { sum[name] = t; continue }
        precondition(s.shape == t.shape, "gradient '\(name)' changed shape within a batch")
        sum[name] = nil // drop the dictionary's reference so `s` is unique and updated in place
        s.data.withUnsafeMutableBufferPointer { sp in
            t.data.withUnsafeBufferPointer { tp in for i in 0..<sp.count { sp[i] += tp[i] } }
        }
        sum[name] = s
    }
}

extension TrainableEncoder {
    /// CTC loss and gradients summed over `batch`, computed by `threads` workers.
    ///
    /// Determinism: utterance `i` goes to worker `i % threads` (interleaved, so a length-sorted batch splits
    /// evenly); each worker sums its utterances in index order into its own accumulator, and the
    /// accumulators are summed in worker order. The result therefore does not depend on thread timing (it
    /// does depend on `threads`, since Float addition is not associative).
    ///
    /// The caller should run OpenBLAS with one thread (`BLASThreads.set(1)`, as `Trainer` does once at
    /// start-up): the workers are the parallelism, BLAS threads of their own would oversubscribe the cores,
    /// and the last bits of a product depend on OpenBLAS's thread count. The setting is process-wide, so it
    /// is set once rather than toggled around each batch (toggling would let concurrent callers disturb
    /// each other's results).
    public func batchLossAndGradients(_ batch: [TrainingExample], blank: Int = 0, threads: Int = 2) throws(TrainingError) -> BatchGradients {
        let workers = max(1, min(threads, batch.count))
        let results = Locked<[Result<BatchGradients, TrainingError>?]>(slots: workers)
        let work: @Sendable (Int) -> Void = { w in
            var acc = BatchGradients(lossSum: 0, gradients: [:], utterances: 0, impossible: [], outputFrames: 0)
            do throws(TrainingError) {
                for i in stride(from: w, to: batch.count, by: workers) {
                    let r = try self.ctcLossAndGradients(features: batch[i].features, labels: batch[i].labels, blank: blank)
                    if r.impossible { acc.impossible.append(i); continue }
                    acc.lossSum += Double(r.loss)
                    acc.utterances += 1
                    acc.outputFrames += r.outputFrames
                    accumulate(&acc.gradients, r.gradients)
                }
                results.set(w, .success(acc))
            } catch {
                results.set(w, .failure(error))
            }
        }
        if workers == 1 {
            work(0)
        } else {
            DispatchQueue.concurrentPerform(iterations: workers, execute: work)
        }
        let perWorker = results.current
        var total = BatchGradients(lossSum: 0, gradients: [:], utterances: 0, impossible: [], outputFrames: 0)
        for r in perWorker {
            switch r! {
            case .failure(let e): throw e
            case .success(let acc):
                total.lossSum += acc.lossSum
                total.utterances += acc.utterances
                total.outputFrames += acc.outputFrames
                total.impossible += acc.impossible
                accumulate(&total.gradients, acc.gradients)
            }
        }
        total.impossible.sort()
        return total
    }
}
