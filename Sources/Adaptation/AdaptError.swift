/// Why an adaptation could not start or go on; each case names the file or option and what to do.
/// Problems with single data items are not errors: they are `SkippedItem`s, reported and skipped.
public enum AdaptError: Error, CustomStringConvertible, Equatable {
    /// A command-line option or `AdaptOptions` field out of range.
    case option(name: String, reason: String)
    /// The base model could not be read or is unsuited.
    case model(path: String, reason: String)
    /// DATA (or --val, --general) could not be read as a data set.
    case data(path: String, reason: String)
    /// The activation cache folder could not be created or written.
    case cache(path: String, reason: String)
    /// A training computation failed (the Training module's error, in words).
    case training(String)
    /// The adapted model could not be written.
    case output(path: String, reason: String)

    public var description: String {
        switch self {
        case let .option(name, reason): return "\(name): \(reason)"
        case let .model(path, reason): return "base model \(path): \(reason)"
        case let .data(path, reason): return "data \(path): \(reason)"
        case let .cache(path, reason): return "activation cache \(path): \(reason)"
        case let .training(reason): return "adaptation: \(reason)"
        case let .output(path, reason): return "cannot write \(path): \(reason)"
        }
    }
}
