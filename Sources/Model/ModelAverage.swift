import Tensors

extension ModelFile {
    /// The element-wise mean of the parameters of several snapshots of one training run (checkpoint
    /// averaging: the mean of the last few snapshots of a decaying schedule usually decodes better than
    /// any one of them, at no training cost).
    ///
    /// Everything but the learned weights must agree with the first model: architecture, frontend,
    /// vocabulary, domain decoding, and the feature statistics (`frontend.mean`, `frontend.std`), which
    /// a run fixes once; independently started runs differ there, and averaging the weights of
    /// independently trained models gives nonsense. Runs that start from one model (`init_from`) keep its
    /// statistics and stay close enough in weight space for their mean to work (a "model soup"). Sums are taken in double precision, in the order
    /// given. The result carries the last model's provenance plus `averaged_from` (each file with its
    /// SHA-256 when known), and the word timing only if every input has the same one; less `best_valid_wer`: that figure belongs to the run's snapshots, and a
    /// model card or `earshot model info` would otherwise show it as the mean's, which no trainer scored.
    public static func average(_ models: [(file: String, model: ModelFile)]) throws(ModelError) -> ModelFile {
        guard let (firstFile, first) = models.first else {
            throw .cannotAverage(file: "<memory>", first: "<nothing>", reason: "no models given")
        }
        // A training checkpoint carries the optimiser's moments and position: averaged, they would make a
        // file that looks resumable but whose state belongs to no run.
        for (file, model) in models where model.description.provenance["trainer_state"] != nil
            || model.parameters.keys.contains(where: { $0.hasPrefix("adamw.") }) {
            throw .cannotAverage(file: file, first: firstFile,
                                 reason: "it is a training checkpoint (optimiser state included); average plain models: the run's snapshots/ or last.safetensors")
        }
        let fixed: Set<String> = [InputNormalization.meanName, InputNormalization.stdName]
        for (file, model) in models.dropFirst() {
            func refuse(_ reason: String) -> ModelError { .cannotAverage(file: file, first: firstFile, reason: reason) }
            let a = first.description, b = model.description
            guard a.architecture == b.architecture else { throw refuse("another architecture") }
            guard a.frontendJSON == b.frontendJSON else { throw refuse("another frontend") }
            guard a.vocabulary == b.vocabulary else { throw refuse("another vocabulary") }
            guard a.decodingJSON == b.decodingJSON else { throw refuse("another domain decoding") }
            guard Set(first.parameters.keys) == Set(model.parameters.keys) else {
                let odd = Set(first.parameters.keys).symmetricDifference(model.parameters.keys).sorted()
                throw refuse("other tensors (\(odd.prefix(3).joined(separator: ", ")))")
            }
            for (name, t) in first.parameters {
                let u = model.parameters[name]!
                guard u.shape == t.shape else { throw refuse("tensor '\(name)' is shaped \(u.shape), not \(t.shape)") }
                if fixed.contains(name) && u.data != t.data {
                    throw refuse("other feature statistics ('\(name)'), so another training run")
                }
            }
        }
        var averaged: [String: Tensor] = [:]
        for (name, t) in first.parameters {
            averaged[name] = fixed.contains(name) ? t : Tensor.mean(models.map { $0.model.parameters[name]! })
        }
        var description = models.last!.model.description
        description.provenance["best_valid_wer"] = nil
        // A calibration measured the weights it was made for: the mean keeps one only if every input has
        // the same (a model averaged with itself or its copies); else calibrate the mean again.
        if !models.allSatisfy({ $0.model.description.timing == description.timing }) {
            description.timing = nil
            description.provenance["timing_calibration"] = nil
        }
        description.provenance["averaged_from"] = .array(models.map { file, model in
            .string(model.sha256.map { "\(file) (sha256 \($0))" } ?? file)
        })
        return ModelFile(description: description, parameters: averaged)
    }
}

extension Tensor {
    /// The element-wise mean of tensors of one shape (the first's), summed in double precision in the
    /// order given: checkpoint averaging and adaptation's mean of runs.
    public static func mean(_ tensors: [Tensor]) -> Tensor {
        precondition(!tensors.isEmpty, "the mean of no tensors")
        precondition(tensors.allSatisfy { $0.shape == tensors[0].shape }, "the mean of tensors of different shapes")
        var sum = [Double](repeating: 0, count: tensors[0].data.count)
        for t in tensors {
            t.data.withUnsafeBufferPointer { x in for i in 0..<sum.count { sum[i] += Double(x[i]) } }
        }
        let scale = 1 / Double(tensors.count)
        return Tensor(shape: tensors[0].shape, data: sum.map { Float($0 * scale) })
    }
}
