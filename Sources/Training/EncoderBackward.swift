import Model
import Tensors

/// A loss on the encoder output: its value, d loss / d output, and whether it was impossible (then the
/// gradient is zero and nothing is back-propagated).
public struct OutputLoss: Sendable {
    public var loss: Float
    public var gradOutput: Matrix
    public var impossible: Bool

    public init(loss: Float, gradOutput: Matrix, impossible: Bool = false) {
        self.loss = loss; self.gradOutput = gradOutput; self.impossible = impossible
    }
}

/// Loss and parameter gradients of one utterance.
public struct UtteranceGradients: Sendable {
    public var loss: Float
    /// d loss / d parameter for every trainable parameter (all parameters when no subset was given).
    /// Empty when `impossible`.
    public var gradients: [String: Tensor]
    /// The loss could not be computed (CTC: the labels do not fit the output frames); loss is 0.
    public var impossible: Bool
    /// Encoder output frames (the CTC time axis).
    public var outputFrames: Int
}

/// Intermediate CTC (Lee & Watanabe, 2021): the output head also reads the output of a block halfway up,
/// and the CTC loss of that reading is mixed into the objective,
/// `(1 - weight) x CTC(final) + weight x CTC(head(block output))`.
///
/// The head is shared, so nothing is added to the model and inference is unchanged; the lower blocks get a
/// short path to the labels, which is meant to make a deep stack of small blocks train to better
/// representations than the final loss alone reaches. Training only.
public struct IntermediateCTC: Sendable, Equatable {
    /// Top-level layer index whose output the head also reads.
    public var tapLayer: Int
    /// Top-level index of the head's first layer: the head is `layers[headStart...]`.
    public var headStart: Int
    /// Share of the intermediate loss in the objective, in (0, 1).
    public var weight: Float

    public init(tapLayer: Int, headStart: Int, weight: Float) {
        precondition(weight > 0 && weight < 1, "intermediate CTC weight \(weight) outside (0, 1)")
        precondition(tapLayer >= 0 && tapLayer < headStart, "intermediate CTC tap \(tapLayer) not below the head at \(headStart)")
        self.tapLayer = tapLayer; self.headStart = headStart; self.weight = weight
    }

    /// For `layers` ending in a run of residual blocks and then the head: the tap after the `afterBlock`-th
    /// residual block (1-based; 0: half of them, rounded down), and the head from the first layer after the
    /// last block. A failure naming the reason when the architecture has no such shape or the weight is
    /// outside (0, 1).
    public static func resolve(layers: [LayerSpec], afterBlock: Int, weight: Float) -> Result<IntermediateCTC, TrainingError> {
        guard weight > 0 && weight < 1 else { return .failure(.model("intermediate CTC weight \(weight): it must lie in (0, 1)")) }
        let residuals = layers.indices.filter { if case .residual = layers[$0] { return true } else { return false } }
        guard let last = residuals.last, last + 1 < layers.count else {
            return .failure(.model("intermediate CTC needs residual blocks followed by an output head"))
        }
        let block = afterBlock == 0 ? residuals.count / 2 : afterBlock
        guard block >= 1 && block < residuals.count else {
            return .failure(.model("intermediate CTC after block \(block): the model has \(residuals.count) blocks; choose 1 to \(residuals.count - 1)"))
        }
        return .success(IntermediateCTC(tapLayer: residuals[block - 1], headStart: last + 1, weight: weight))
    }
}

/// The encoder prepared for one optimiser step: Model's layers built from the current parameters, ready to
/// run forward keeping each layer's input (the tape) and then backward.
///
/// Trainable subsets make adaptation cheap twice over: gradients are only formed for trainable parameters,
/// and back-propagation stops at the lowest layer that holds a trainable parameter (the layers below run
/// forward only, with nothing kept). Build a new value after each parameter update; it holds the
/// parameters, not optimiser state, and is `Sendable` so worker threads can share it.
public struct TrainableEncoder: Sendable {
    public let specs: [LayerSpec]
    public let layers: [Layer]
    /// The model's CMVN, applied to the input before the first layer (not trained); nil when the input is
    /// what the first layer sees.
    public let normalization: InputNormalization?
    /// Names of the parameters that get gradients; nil means all.
    public let trainable: Set<String>?
    /// Index in `layers` of the lowest top-level layer with a trainable parameter (`layers.count` if none).
    public let lowestTrainableLayer: Int
    /// When set, `ctcLossAndGradients` trains with intermediate CTC as well.
    public var intermediateCTC: IntermediateCTC?

    /// Wraps a built encoder (input: raw frontend frames; its CMVN is applied first, as in inference).
    public init(encoder: Encoder, trainable: Set<String>? = nil) {
        self.init(specs: encoder.architecture.layers, layers: encoder.layers, normalization: encoder.normalization, trainable: trainable)
    }

    /// Builds Model's layers for `specs` from `parameters` (input: what the first layer sees, no CMVN).
    public init(specs: [LayerSpec], parameters: [String: Tensor], trainable: Set<String>? = nil) throws(TrainingError) {
        var built: [Layer] = []
        for spec in specs {
            do { built.append(try Layer(spec: spec, parameters: parameters)) }
            catch { throw .model(error.description) }
        }
        self.init(specs: specs, layers: built, normalization: nil, trainable: trainable)
    }

    private init(specs: [LayerSpec], layers: [Layer], normalization: InputNormalization?, trainable: Set<String>?) {
        self.specs = specs
        self.layers = layers
        self.normalization = normalization
        self.trainable = trainable
        lowestTrainableLayer = layers.firstIndex { TrainableEncoder.hasTrainable($0, trainable) } ?? layers.count
    }

    static func parameterNames(of layer: Layer) -> [String] { layer.spec.parameters.map(\.name) }

    static func hasTrainable(_ layer: Layer, _ trainable: Set<String>?) -> Bool {
        let names = parameterNames(of: layer)
        guard let trainable else { return !names.isEmpty }
        return names.contains { trainable.contains($0) }
    }

    func isTrainable(_ name: String) -> Bool { trainable?.contains(name) ?? true }

    /// The plain forward pass (no tape).
    public func forward(_ input: Matrix) -> Matrix { Layer.forward(layers, normalization?.apply(input) ?? input) }

    /// Forward keeping the tape, the loss on the output, and backward to the lowest trainable layer.
    public func lossAndGradients(input: Matrix, loss: (Matrix) throws(TrainingError) -> OutputLoss) throws(TrainingError) -> UtteranceGradients {
        try lossAndGradients(input: input, loss: loss, intermediate: nil)
    }

    /// As above; with `intermediate`, the head also runs on the tap layer's output, `loss` is applied to
    /// both readings, and the two are mixed by the intermediate weight (impossible if either is).
    private func lossAndGradients(input: Matrix, loss: (Matrix) throws(TrainingError) -> OutputLoss,
                                  intermediate: IntermediateCTC?) throws(TrainingError) -> UtteranceGradients {
        if let expected = firstInputChannels(layers), input.rows > 0, input.cols != expected {
            throw .inputShape(expectedChannels: expected, found: input.cols)
        }
        if let intermediate {
            precondition(intermediate.headStart < layers.count, "intermediate CTC head past the last layer")
        }
        // Layers below the lowest trainable one run without a tape.
        var x = normalization?.apply(input) ?? input
        var tapped: Matrix?
        for (i, l) in layers.enumerated().prefix(lowestTrainableLayer) {
            x = l.forward(x)
            if i == intermediate?.tapLayer { tapped = x }
        }
        var tape: [Tape] = []
        tape.reserveCapacity(layers.count - lowestTrainableLayer)
        for (i, l) in layers.enumerated().dropFirst(lowestTrainableLayer) {
            let (node, y) = Tape.record(l, x)
            tape.append(node)
            x = y
            if i == intermediate?.tapLayer { tapped = y }
        }
        var result = try loss(x)
        guard !result.impossible else {
            return UtteranceGradients(loss: 0, gradients: [:], impossible: true, outputFrames: x.rows)
        }
        precondition(result.gradOutput.rows == x.rows && result.gradOutput.cols == x.cols, "loss gradient shape differs from the encoder output")
        var grads: [String: Tensor] = [:]
        guard let intermediate, let tapped else {
            _ = backward(tape, gradOutput: result.gradOutput, needInputGradient: false, into: &grads)
            return UtteranceGradients(loss: result.loss, gradients: grads, impossible: false, outputFrames: x.rows)
        }
        // The head's second reading, on the tap's output.
        var headTape: [Tape] = []
        var h = tapped
        for l in layers[intermediate.headStart...] {
            let (node, y) = Tape.record(l, h)
            headTape.append(node)
            h = y
        }
        var side = try loss(h)
        guard !side.impossible else {
            return UtteranceGradients(loss: 0, gradients: [:], impossible: true, outputFrames: x.rows)
        }
        let w = intermediate.weight
        result.gradOutput.scale(by: 1 - w)
        side.gradOutput.scale(by: w)
        // Back through the layers above the tap to its output, add the side path's gradient there, then on
        // down. The head's parameters get both paths' gradients, summed. A tap below every trainable
        // layer (only the top trains) needs no gradient at the tap: the side path then trains the head only.
        var headGrads: [String: Tensor] = [:]
        if intermediate.tapLayer < lowestTrainableLayer {
            _ = backward(tape, gradOutput: result.gradOutput, needInputGradient: false, into: &grads)
            _ = backward(headTape, gradOutput: side.gradOutput, needInputGradient: false, into: &headGrads)
        } else {
            let split = intermediate.tapLayer - lowestTrainableLayer + 1
            var g = backward(Array(tape[split...]), gradOutput: result.gradOutput, needInputGradient: true, into: &grads)!
            let gSide = backward(headTape, gradOutput: side.gradOutput, needInputGradient: true, into: &headGrads)!
            g.add(gSide)
            _ = backward(Array(tape[..<split]), gradOutput: g, needInputGradient: false, into: &grads)
        }
        accumulate(&grads, headGrads)
        return UtteranceGradients(loss: (1 - w) * result.loss + w * side.loss, gradients: grads, impossible: false, outputFrames: x.rows)
    }

    /// CTC loss of `labels` on the encoder output (the logits) for `features`, with gradients; with
    /// `intermediateCTC` set, the mixed intermediate objective and its gradients.
    public func ctcLossAndGradients(features: Matrix, labels: [Int], blank: Int = 0) throws(TrainingError) -> UtteranceGradients {
        try lossAndGradients(input: features, loss: { (logits: Matrix) throws(TrainingError) -> OutputLoss in
            // Finite inputs give finite logits unless the weights have diverged: say so, rather than let the
            // loss count the utterance impossible (which it must do for labels that do not fit the frames).
            guard logits.data.allSatisfy({ $0.isFinite }) else { throw .nonFiniteOutput }
            let r = try ctcLoss(logits: logits, labels: labels, blank: blank)
            return OutputLoss(loss: r.loss, gradOutput: r.gradLogits, impossible: r.impossible)
        }, intermediate: intermediateCTC)
    }

    /// Back-propagates `gradOutput` through `tape` (in reverse), adding parameter gradients to `grads`.
    /// When `needInputGradient` is false, stops below the lowest node with a trainable parameter and does
    /// not form that node's input gradient. Returns the input gradient when asked for.
    private func backward(_ tape: [Tape], gradOutput: Matrix, needInputGradient: Bool,
                          into grads: inout [String: Tensor]) -> Matrix? {
        let lowest = needInputGradient ? 0 : (tape.firstIndex { TrainableEncoder.hasTrainable($0.layer, trainable) } ?? tape.count)
        var g = gradOutput
        for i in stride(from: tape.count - 1, through: lowest, by: -1) {
            let wantInput = needInputGradient || i > lowest
            switch tape[i] {
            case let .leaf(layer, input):
                let wantParams = TrainableEncoder.hasTrainable(layer, trainable)
                var r: LayerGradients
                switch layer {
                case .conv1d(let l):
                    r = conv1dBackward(spec: l.spec, weight: l.weight, input: input, gradOutput: g,
                                       computeInputGradient: wantInput, computeParameterGradients: wantParams)
                case .dense(let l):
                    r = denseBackward(spec: l.spec, weight: l.weight, input: input, gradOutput: g,
                                      computeInputGradient: wantInput, computeParameterGradients: wantParams)
                case .layerNorm(let l):
                    r = layerNormBackward(spec: l.spec, weight: l.weight, input: input, gradOutput: g,
                                          computeInputGradient: wantInput, computeParameterGradients: wantParams)
                case .relu:
                    r = LayerGradients(gradInput: wantInput ? reluBackward(input: input, gradOutput: g) : nil, parameters: [:])
                case .residual:
                    preconditionFailure("residual layers are recorded as .residual tape nodes")
                }
                for (name, t) in r.parameters where isTrainable(name) { grads[name] = t }
                if let gi = r.gradInput { g = gi }
            case let .residual(_, body):
                // y = x + body(x): the skip path passes g through unchanged.
                let bodyGrad = backward(body, gradOutput: g, needInputGradient: wantInput, into: &grads)
                if wantInput, let bodyGrad { g.add(bodyGrad) }
            }
        }
        return needInputGradient ? g : nil
    }
}

/// One layer's forward record: the layer and what it needs for its backward.
indirect enum Tape: Sendable {
    /// A parameterised or element-wise layer and its input.
    case leaf(Layer, input: Matrix)
    /// A residual block and the tapes of its body (the block's input is the first body node's input).
    case residual(Layer, body: [Tape])

    var layer: Layer {
        switch self { case .leaf(let l, _), .residual(let l, _): return l }
    }

    /// Runs `layer` on `x`, returning its tape node and output.
    static func record(_ layer: Layer, _ x: Matrix) -> (Tape, Matrix) {
        guard case .residual(let r) = layer else { return (.leaf(layer, input: x), layer.forward(x)) }
        var body: [Tape] = []
        var h = x
        for l in r.body {
            let (node, y) = record(l, h)
            body.append(node)
            h = y
        }
        precondition(h.rows == x.rows && (h.cols == x.cols || h.rows == 0), "residual '\(r.name)' body changed the shape")
        for i in 0..<h.data.count { h.data[i] += x.data[i] }
        return (.residual(layer, body: body), h)
    }
}

/// Input channels of the first parameterised layer, nil when no layer fixes them.
func firstInputChannels(_ layers: [Layer]) -> Int? {
    for l in layers {
        switch l {
        case .conv1d(let c): return c.spec.inChannels
        case .dense(let d): return d.spec.inFeatures
        case .layerNorm(let n): return n.spec.dim
        case .relu: continue
        case .residual(let r): if let c = firstInputChannels(r.body) { return c }
        }
    }
    return nil
}
