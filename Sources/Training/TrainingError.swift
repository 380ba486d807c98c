/// Why a training computation refused its inputs; each case names the offending thing and what to fix.
public enum TrainingError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A label id outside the vocabulary, or equal to the blank id.
    case invalidLabel(label: Int, position: Int, vocabulary: Int, blank: Int)
    /// The blank id is not a column of the logits.
    case invalidBlank(blank: Int, vocabulary: Int)
    /// A parameter the network needs is missing from the parameter dictionary.
    case missingParameter(String)
    /// A parameter has the wrong shape for its layer.
    case parameterShape(name: String, expected: [Int], found: [Int])
    /// An input matrix has the wrong number of channels for the first layer.
    case inputShape(expectedChannels: Int, found: Int)
    /// Optimiser state from a checkpoint does not fit the parameters being trained.
    case optimizerState(String)
    /// The model's layers could not be built from the parameters (Model's error, in words).
    case model(String)
    /// An augmentation could not be applied (bad setting or the resampler failed).
    case augmentation(String)
    /// The random generator state tensor is malformed.
    case generatorState(String)
    /// The gradients' norm is NaN or infinite: the update was not applied.
    case nonFiniteGradient
    /// The model's output (logits) holds NaN or infinity: the weights have diverged. Without this the CTC
    /// loss would call each utterance impossible (zero loss and gradient), and a diverged run would go on
    /// logging a loss of 0.
    case nonFiniteOutput

    public var description: String {
        switch self {
        case let .invalidLabel(label, position, vocabulary, blank):
            return "label \(label) at position \(position) is not a usable token: ids must be in 0..<\(vocabulary) and differ from the blank id \(blank); check the tokenizer against the model's vocabulary"
        case let .invalidBlank(blank, vocabulary):
            return "blank id \(blank) is outside the vocabulary of \(vocabulary) logits"
        case let .missingParameter(name):
            return "parameter '\(name)' is missing; the model file does not match the layer list"
        case let .parameterShape(name, expected, found):
            return "parameter '\(name)' has shape \(found), its layer needs \(expected)"
        case let .inputShape(expected, found):
            return "input frames have \(found) channels, the first layer expects \(expected); check the feature configuration"
        case let .optimizerState(reason):
            return "optimizer state cannot be restored: \(reason)"
        case let .model(reason):
            return reason
        case let .augmentation(reason):
            return reason
        case let .generatorState(reason):
            return "random generator state cannot be restored: \(reason)"
        case .nonFiniteGradient:
            return "the gradients are not finite (NaN or infinity); the update was not applied"
        case .nonFiniteOutput:
            return "the model's output is not finite (NaN or infinity): its weights have diverged"
        }
    }
}
