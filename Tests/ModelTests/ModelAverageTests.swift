import Foundation
import Testing
import Tensors
@testable import Model

/// `ModelFile.average` (checkpoint averaging) against sums written out here, and its refusals.
@Suite struct ModelAverageTests {
    /// Three models of one "run": the same description and feature statistics, other weights.
    static func snapshots() -> [(file: String, model: ModelFile)] {
        let base = smallModel(seed: 40)
        return (0..<3).map { k in
            var m = smallModel(seed: 41 + UInt64(k))
            m.parameters["frontend.mean"] = base.parameters["frontend.mean"]
            m.parameters["frontend.std"] = base.parameters["frontend.std"]
            m.description.provenance["steps"] = .number(Double(1000 * (k + 1)))
            m.description.provenance["best_valid_wer"] = .string("61.13")
            return (file: "step-\(k).safetensors", model: m)
        }
    }

    @Test func everyWeightIsTheMeanAndTheStatisticsAreKept() throws {
        let inputs = Self.snapshots()
        let averaged = try ModelFile.average(inputs)
        #expect(Set(averaged.parameters.keys) == Set(inputs[0].model.parameters.keys))
        for (name, t) in averaged.parameters {
            let values = inputs.map { $0.model.parameters[name]!.data }
            for i in t.data.indices {
                let mean = (Double(values[0][i]) + Double(values[1][i]) + Double(values[2][i])) / 3
                #expect(abs(Double(t.data[i]) - mean) <= 1e-7 * max(1, abs(mean)), "\(name)[\(i)]")
            }
            #expect(t.shape == inputs[0].model.parameters[name]!.shape)
        }
        // The inputs' weights differ, so the mean is none of them.
        #expect(averaged.parameters["out.weight"] != inputs[0].model.parameters["out.weight"])
        #expect(averaged.parameters["frontend.std"] == inputs[0].model.parameters["frontend.std"])
        #expect(averaged.description.provenance["steps"] == .number(3000))
        #expect(averaged.description.provenance["averaged_from"] == .array(inputs.map { .string($0.file) }))
        #expect(averaged.description.provenance["best_valid_wer"] == nil, "the snapshots' figure, not the mean's")
        try averaged.validate()
    }

    /// A calibration belongs to the weights it was measured on: the mean keeps one only when every
    /// input has the same.
    @Test func theWordTimingIsKeptOnlyWhenEveryInputHasTheSame() throws {
        var inputs = Self.snapshots()
        #expect(try ModelFile.average(inputs).description.timing == nil)
        for k in inputs.indices { inputs[k].model.description.timing = WordTiming(startDelayMs: 150, endDelayMs: 60) }
        #expect(try ModelFile.average(inputs).description.timing == WordTiming(startDelayMs: 150, endDelayMs: 60))
        inputs[2].model.description.provenance["timing_calibration"] = .string("measured")
        #expect(try ModelFile.average(inputs).description.provenance["timing_calibration"] == .string("measured"))
        inputs[0].model.description.timing = WordTiming(startDelayMs: 140, endDelayMs: 60)
        #expect(try ModelFile.average(inputs).description.timing == nil)
        #expect(try ModelFile.average(inputs).description.provenance["timing_calibration"] == nil, "the record of a calibration dropped")
        inputs[0].model.description.timing = nil
        #expect(try ModelFile.average(inputs).description.timing == nil)
    }

    @Test func averagingAModelWithItselfGivesItBack() throws {
        let m = smallModel(seed: 50)
        let averaged = try ModelFile.average([("a", m), ("a again", m)])
        #expect(averaged.parameters == m.parameters)
    }

    @Test func modelsOfAnotherRunOrShapeAreRefusedNamingTheFile() throws {
        var inputs = Self.snapshots()
        inputs[2].model.parameters["frontend.mean"]!.data[0] += 1
        #expect(throws: ModelError.cannotAverage(file: "step-2.safetensors", first: "step-0.safetensors",
                                                 reason: "other feature statistics ('frontend.mean'), so another training run")) {
            try ModelFile.average(inputs)
        }
        inputs = Self.snapshots()
        inputs[1].model.description.vocabulary[2] = "x"
        #expect(throws: ModelError.cannotAverage(file: "step-1.safetensors", first: "step-0.safetensors", reason: "another vocabulary")) {
            try ModelFile.average(inputs)
        }
        inputs = Self.snapshots()
        inputs[1].model.parameters["extra"] = Tensor(shape: [1], data: [0])
        #expect(throws: ModelError.self) { try ModelFile.average(inputs) }
        #expect(throws: ModelError.self) { try ModelFile.average([]) }
    }

    /// Training checkpoints of one run share every key, optimiser moments included, so the key check
    /// passed them and their moments and step were averaged into a file that looked resumable.
    @Test func trainingCheckpointsAreRefused() throws {
        var inputs = Self.snapshots()
        for k in inputs.indices {
            inputs[k].model.parameters["adamw.m.out.weight"] = inputs[k].model.parameters["out.weight"]
            inputs[k].model.parameters["adamw.step"] = Tensor(shape: [2], data: [Float(1000 * (k + 1)), 0])
            inputs[k].model.description.provenance["trainer_state"] = .string("{\"step\":\(1000 * (k + 1))}")
        }
        #expect(throws: ModelError.cannotAverage(file: "step-0.safetensors", first: "step-0.safetensors",
                                                 reason: "it is a training checkpoint (optimiser state included); average plain models: the run's snapshots/ or last.safetensors")) {
            try ModelFile.average(inputs)
        }
    }
}
