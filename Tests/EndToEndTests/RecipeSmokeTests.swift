import Foundation
import Model
import Testing
import TestSupport

/// The documented pre-training recipe, end to end at toy scale: the corpus script's smoke mode, then
/// `earshot train` with the shipped base recipe (models/earshot-base-en.train.toml) pointed at that
/// corpus and shrunk to a few steps. Proves a fresh clone can reproduce corpus and training runs.
@Suite struct RecipeSmokeTests {
    @Test func corpusSmokeRunTrainsWithTheBaseRecipe() throws {
        let earshot = try earshotExecutable()
        let root = packageRoot()
        try withTemporaryDirectory { dir in
            let corpus = dir.appendingPathComponent("corpus")
            let synth = try runProcess("/usr/bin/env", ["python3", root.appendingPathComponent("corpus/synthesize.py").path,
                                                        "--small", "--out", corpus.path], scratch: dir)
            try #require(synth.status == 0, "corpus/synthesize.py --small failed:\n\(synth.stderr)")
            for split in ["train", "valid", "test"] {
                let manifest = try String(contentsOf: corpus.appendingPathComponent("\(split).tsv"), encoding: .utf8)
                #expect(!manifest.isEmpty, "the smoke corpus has no \(split) utterances")
            }

            // The shipped recipe, with its data paths, size and length overridden for a smoke run.
            var recipe = try String(contentsOf: root.appendingPathComponent("models/earshot-base-en.train.toml"), encoding: .utf8)
            let overrides: [(String, String)] = [
                ("train = \"~/.cache/earshot/corpus/train.tsv\"", "train = \"\(corpus.path)/train.tsv\""),
                ("valid = \"~/.cache/earshot/corpus/valid.tsv\"", "valid = \"\(corpus.path)/valid.tsv\""),
                ("channels = 320", "channels = 32"), ("blocks = 12", "blocks = 1"), ("hidden = 640", "hidden = 32"),
                ("warmup_steps = 1000", "warmup_steps = 2"), ("batch_seconds = 120.0", "batch_seconds = 20.0"),
                ("valid_every_steps = 1000", "valid_every_steps = 3"), ("log_every_steps = 50", "log_every_steps = 1"),
            ]
            for (from, to) in overrides {
                try #require(recipe.contains(from), "the base recipe no longer contains '\(from)'; update this test")
                recipe = recipe.replacingOccurrences(of: from, with: to)
            }
            let config = dir.appendingPathComponent("smoke.toml")
            try Data(recipe.utf8).write(to: config)
            let run = dir.appendingPathComponent("run")
            let train = try runProcess(earshot, ["train", "--config", config.path, "--output", run.path, "--steps", "6"], scratch: dir)
            try #require(train.status == 0, "earshot train failed:\n\(train.stderr)")
            #expect(train.stderr.contains("validation at step 6"), "no validation was logged:\n\(train.stderr)")

            // The run left a loadable model that knows it was trained for 6 steps on this corpus.
            let model = try ModelFile.load(path: run.appendingPathComponent("last.safetensors").path)
            #expect(model.description.provenance["steps"] == .string("6"))
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("checkpoint.safetensors").path))
            #expect(FileManager.default.fileExists(atPath: run.appendingPathComponent("best.safetensors").path))
        }
    }
}
