import Tensors

/// The encoder run incrementally on one stream: it owns the per-layer state (each conv's look-back
/// frames and frames waiting for their look-ahead or stride, each residual's inputs waiting for the
/// delayed body output) and the working buffers, sized by the largest chunk seen and then reused.
///
/// Feeding an utterance in any chunking and then calling `finish()` gives exactly the rows `forward`
/// gives for the whole utterance: an output frame is handed out as soon as every input frame it
/// depends on has arrived, and `finish()` supplies the zero frames past the end that `forward` pads.
public struct StreamingEncoder: Sendable {
    /// The layer tree flattened into a straight program: a residual becomes "remember the input" and
    /// "add the remembered input to the body's output", so each state lives in a flat array that is
    /// mutated in place (no copy-on-write of nested enum payloads per chunk).
    enum Op: Sendable {
        case conv(Int), dense(Int), layerNorm(Int), relu, residualBegin(Int), residualEnd(Int)
    }

    public let encoder: Encoder
    let ops: [Op]
    let convs: [Conv1DLayer]
    let denses: [DenseLayer]
    let norms: [LayerNormLayer]
    var convStates: [ConvStream]
    var residualQueues: [RowQueue]
    // Ping-pong activation buffers, row-major [rows, channels]; only grow.
    var bufferA: [Float] = []
    var bufferB: [Float] = []

    public init(encoder: Encoder) {
        self.encoder = encoder
        var ops: [Op] = [], convs: [Conv1DLayer] = [], denses: [DenseLayer] = [], norms: [LayerNormLayer] = []
        var queues: [RowQueue] = []
        func flatten(_ layers: [Layer], channels: Int) -> Int {
            var channels = channels
            for layer in layers {
                switch layer {
                case .conv1d(let l): ops.append(.conv(convs.count)); convs.append(l); channels = l.spec.outChannels
                case .dense(let l): ops.append(.dense(denses.count)); denses.append(l); channels = l.spec.outFeatures
                case .layerNorm(let l): ops.append(.layerNorm(norms.count)); norms.append(l)
                case .relu: ops.append(.relu)
                case .residual(let r):
                    let q = queues.count
                    queues.append(RowQueue(cols: channels))
                    ops.append(.residualBegin(q))
                    channels = flatten(r.body, channels: channels)
                    ops.append(.residualEnd(q))
                }
            }
            return channels
        }
        _ = flatten(encoder.layers, channels: encoder.inputDim)
        self.ops = ops; self.convs = convs; self.denses = denses; self.norms = norms
        self.convStates = convs.map { ConvStream(layer: $0) }
        self.residualQueues = queues
    }

    public var outputDim: Int { encoder.outputDim }

    /// Feeds input frames [n, inputDim] (n may be 0) and returns the output frames that became final.
    public mutating func accept(_ frames: Matrix) -> Matrix {
        precondition(frames.cols == encoder.inputDim || frames.rows == 0,
                     "streaming encoder expects \(encoder.inputDim) features per frame, got \(frames.cols)")
        return frames.data.withUnsafeBufferPointer { run($0, rows: frames.rows, final: false) }
    }

    /// Ends the utterance: returns the remaining output frames (computed with zero frames past the
    /// end, as `forward` does) and resets the state for the next utterance.
    public mutating func finish() -> Matrix {
        let out = [Float]().withUnsafeBufferPointer { run($0, rows: 0, final: true) }
        reset()
        return out
    }

    /// Forgets the current utterance (keeps the buffers' capacity).
    public mutating func reset() {
        for i in convStates.indices { convStates[i].reset(layer: convs[i]) }
        for i in residualQueues.indices { residualQueues[i].rows = 0 }
    }

    private mutating func run(_ input: UnsafeBufferPointer<Float>, rows inputRows: Int, final: Bool) -> Matrix {
        // Take the state out of `self` for the duration so the buffers can be borrowed independently
        // (and uniquely referenced, so writing them never copies).
        var a = bufferA; bufferA = []
        var b = bufferB; bufferB = []
        var states = convStates; convStates = []
        var queues = residualQueues; residualQueues = []
        defer { bufferA = a; bufferB = b; convStates = states; residualQueues = queues }

        var rows = inputRows
        var cols = encoder.inputDim
        ensure(&a, rows * cols)
        if rows > 0 {
            a.withUnsafeMutableBufferPointer { dst in
                dst.baseAddress!.update(from: input.baseAddress!, count: rows * cols)
                encoder.normalization?.run(inPlace: dst.baseAddress!, rows: rows)
            }
        }
        for op in ops {
            switch op {
            case .conv(let i):
                let layer = convs[i]
                rows = a.withUnsafeBufferPointer { src in
                    states[i].process(src.baseAddress!, rows: rows, final: final, layer: layer, into: &b)
                }
                cols = layer.spec.outChannels
                swap(&a, &b)
            case .dense(let i):
                let layer = denses[i]
                ensure(&b, rows * layer.spec.outFeatures)
                a.withUnsafeBufferPointer { src in
                    b.withUnsafeMutableBufferPointer { dst in layer.run(src.baseAddress!, rows: rows, into: dst.baseAddress!) }
                }
                cols = layer.spec.outFeatures
                swap(&a, &b)
            case .layerNorm(let i):
                a.withUnsafeMutableBufferPointer { norms[i].run(inPlace: $0.baseAddress!, rows: rows) }
            case .relu:
                a.withUnsafeMutableBufferPointer { ReLU.run(inPlace: $0.baseAddress!, count: rows * cols) }
            case .residualBegin(let q):
                a.withUnsafeBufferPointer { queues[q].append($0.baseAddress!, rows: rows) }
            case .residualEnd(let q):
                a.withUnsafeMutableBufferPointer { queues[q].addFront(into: $0.baseAddress!, rows: rows) }
                if final { precondition(queues[q].rows == 0, "residual body did not return every frame") }
            }
        }
        return Matrix(rows: rows, cols: cols, data: Array(a[0..<(rows * cols)]))
    }
}

/// Grows `buffer` to at least `count` elements; never shrinks, so steady-state chunks do not allocate.
@inline(__always)
func ensure(_ buffer: inout [Float], _ count: Int) {
    if buffer.count < count { buffer.append(contentsOf: repeatElement(0, count: count - buffer.count)) }
}

/// One conv layer's streaming state. `buffer` holds input frames from absolute index
/// `nextOutput * stride - leftContext` on (row-major [rows, inChannels]): exactly what the next
/// output frame's window starts with. It starts with `leftContext` zero rows, the padding `forward` uses.
struct ConvStream: Sendable {
    var buffer: [Float] = []
    var rows = 0
    /// Input frames received so far (including skipped ones).
    var received = 0
    var nextOutput = 0
    /// Arriving frames to drop because no output reads them (only when stride > kernel).
    var skip = 0
    var scratch: [Float] = []

    init(layer: Conv1DLayer) { reset(layer: layer) }

    mutating func reset(layer: Conv1DLayer) {
        let c = layer.spec.inChannels
        ensure(&buffer, layer.spec.leftContext * c)
        for i in 0..<(layer.spec.leftContext * c) { buffer[i] = 0 }
        rows = layer.spec.leftContext
        received = 0; nextOutput = 0; skip = 0
    }

    /// Appends `n` input frames and writes the output frames now computable into `out`; returns their
    /// count. Output `t` is computable once input `t*stride + rightContext` has arrived, or, when
    /// `final`, for every `t` with `t*stride < received` (missing frames are zeros).
    mutating func process(_ input: UnsafePointer<Float>, rows n: Int, final: Bool, layer: Conv1DLayer, into out: inout [Float]) -> Int {
        let s = layer.spec
        let c = s.inChannels
        received += n
        let dropped = min(skip, n)
        skip -= dropped
        let keep = n - dropped
        if keep > 0 {
            ensure(&buffer, (rows + keep) * c)
            buffer.withUnsafeMutableBufferPointer { dst in
                (dst.baseAddress! + rows * c).update(from: input + dropped * c, count: keep * c)
            }
            rows += keep
        }

        let last: Int  // last computable output index, -1 for none
        if final {
            last = received == 0 ? -1 : (received - 1) / s.stride
        } else {
            let newest = received - 1 - s.rightContext
            last = newest < 0 ? -1 : newest / s.stride
        }
        let count = last - nextOutput + 1
        guard count > 0 else { return 0 }

        let needed = layer.paddedRows(outputs: count)
        if rows < needed {
            // Only at `final`: the zero frames past the end of the utterance.
            ensure(&buffer, needed * c)
            for i in (rows * c)..<(needed * c) { buffer[i] = 0 }
            rows = needed
        }
        ensure(&out, count * s.outChannels)
        buffer.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                layer.run(padded: src.baseAddress!, outputs: count, into: dst.baseAddress!, scratch: &scratch)
            }
        }
        nextOutput += count
        let drop = count * s.stride
        if drop >= rows {
            skip += drop - rows
            rows = 0
        } else {
            buffer.withUnsafeMutableBufferPointer { p in
                p.baseAddress!.update(from: p.baseAddress! + drop * c, count: (rows - drop) * c)
            }
            rows -= drop
        }
        return count
    }
}

/// Frames waiting in a residual connection for the body's (delayed) output, row-major [rows, cols].
struct RowQueue: Sendable {
    let cols: Int
    var data: [Float] = []
    var rows = 0

    init(cols: Int) { self.cols = cols }

    mutating func append(_ src: UnsafePointer<Float>, rows n: Int) {
        guard n > 0 else { return }
        ensure(&data, (rows + n) * cols)
        data.withUnsafeMutableBufferPointer { (dst: inout UnsafeMutableBufferPointer<Float>) in
            (dst.baseAddress! + rows * cols).update(from: src, count: n * cols)
        }
        rows += n
    }

    /// Adds the oldest `n` frames to `x` [n, cols] and removes them.
    mutating func addFront(into x: UnsafeMutablePointer<Float>, rows n: Int) {
        guard n > 0 else { return }
        precondition(n <= rows, "residual body produced more frames than it received")
        let cols = cols
        data.withUnsafeMutableBufferPointer { p in
            let base = p.baseAddress!
            for i in 0..<(n * cols) { x[i] += base[i] }
            if rows > n { base.update(from: base + n * cols, count: (rows - n) * cols) }
        }
        rows -= n
    }
}
