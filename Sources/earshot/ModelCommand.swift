import ArgumentParser
import Audio
import Foundation
import Model
import Recognizer
import Scoring
import Tensors
import Training

struct ModelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model", abstract: "Inspect and combine model files.", subcommands: [Info.self, Average.self, Deepen.self, Calibrate.self])

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a model's architecture, size, look-ahead, frontend, vocabulary, provenance and domain decoding.")

        @Argument(help: "Model file (.safetensors).")
        var path: String

        func run() throws {
            do {
                print(try ModelFile.load(path: path).summaryWithDecoding(file: path))
            } catch {
                throw CLIError(error.description)
            }
        }
    }

    struct Average: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Average the weights of snapshots of one training run into a new model.",
            discussion: """
                Checkpoint averaging: the element-wise mean of the last few snapshots of a run (earshot \
                train writes them with run.snapshot_every_steps) usually decodes better than any one of \
                them. The models must share architecture, frontend, vocabulary and feature statistics, \
                which snapshots of one run do, and so do snapshots of runs started from the same model \
                (model.init_from keeps its statistics; their mean is a "model soup", which is how the \
                shipped model was made); anything else is refused, naming the file. The output records \
                the inputs (provenance 'averaged_from') and is written atomically. A word-timing \
                calibration is kept only when every input has the same one; otherwise the mean has none \
                (it says so): run `earshot model calibrate` on it.

                Example:
                  earshot model average --out avg.safetensors \\
                    run/snapshots/step-00028000.safetensors \\
                    run/snapshots/step-00029000.safetensors \\
                    run/snapshots/step-00030000.safetensors
                """)

        @Option(help: "The averaged model to write (.safetensors).")
        var out: String

        @Argument(help: "Two or more model files (.safetensors).")
        var models: [String]

        func validate() throws {
            guard models.count >= 2 else { throw ValidationError("give at least two models to average") }
            guard !models.contains(where: { sameFile($0, out) }) else { throw ValidationError("--out \(out) is one of the inputs; write the average elsewhere") }
        }

        func run() throws {
            try checkOutputFile("--out", out, example: "average.safetensors")
            do {
                let loaded = try models.map { path throws(ModelError) in (file: path, model: try ModelFile.load(path: path)) }
                let mean = try ModelFile.average(loaded)
                try mean.save(path: out)
                print("averaged \(models.count) models into \(out)")
                // Without it every reported word time is late by the model's emission delay.
                if mean.description.timing == nil, loaded.contains(where: { $0.model.description.timing != nil }) {
                    print("word timing: the inputs' calibrations differ (or some have none), so the mean has none; run `earshot model calibrate \(out) --data VALID.tsv --out \(out)` (without it, word times come about 0.1-0.2 s late)")
                }
            } catch {
                throw CLIError(error.description)
            }
        }
    }

    struct Deepen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Insert residual blocks into a model, each starting near the identity, to train it on with more capacity.",
            discussion: """
                Progressive growing: the new blocks copy the shape of the model's residual blocks, with a \
                causal depthwise convolution (the look-ahead, and so the latency, is unchanged), and are \
                spread evenly between the old ones. Their LayerNorm gain starts at --gain, so the deepened \
                model decodes almost as the original does; train it on with model.init_from (a fresh \
                optimiser) to let the new blocks learn. Blocks are renumbered in order. Each block costs \
                about channels x (channels + kernel) multiplies per frame: six blocks make the shipped \
                model about a third slower. Written atomically.

                Example:
                  earshot model deepen --blocks 6 --out deeper.safetensors models/earshot-base-en.safetensors
                """)

        @Option(help: "Residual blocks to add.")
        var blocks: Int

        @Option(help: "Starting LayerNorm gain of the new blocks; above 0 (at 0 they would add nothing, exactly, but never learn).")
        var gain: Float = 0.05

        @Option(help: "Seed for the new blocks' convolution weights.")
        var seed: UInt64 = 1

        @Option(help: "The deepened model to write (.safetensors).")
        var out: String

        @Argument(help: "Model file (.safetensors).")
        var model: String

        func validate() throws {
            guard (1...256).contains(blocks) else { throw ValidationError("--blocks must be in 1...256") }
            guard gain > 0, gain.isFinite else { throw ValidationError("--gain must be a positive number (at 0 the new blocks never learn)") }
            guard !sameFile(out, model) else { throw ValidationError("--out \(out) is the input; write the deepened model elsewhere") }
        }

        func run() throws {
            try checkOutputFile("--out", out, example: "deeper.safetensors")
            do {
                let original = try ModelFile.load(path: model)
                let deeper = try original.deepened(by: blocks, gain: gain, seed: seed, file: model)
                try deeper.save(path: out)
                let before = original.description.architecture, after = deeper.description.architecture
                print("\(model): \(before.parameterCount) parameters -> \(out): \(after.parameterCount) (\(blocks) blocks added; look-ahead \(String(format: "%.0f", after.lookAheadMs)) ms)")
            } catch let error as DeepenError {
                throw CLIError(error.description)
            } catch let error as ModelError {
                throw CLIError(error.description)
            }
        }
    }

    struct Calibrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure how late a model places words, and store the correction in the model.",
            discussion: """
                A CTC model emits a word's letters some frames after their sound: its look-ahead lets it \
                wait for evidence. Left alone, every word time it reports (transcribe's JSON and \
                subtitles, earshotd's finals) runs late by that much. This recognises each recording of \
                MANIFEST whole (greedy), compares the first word's start and the last word's end with \
                where the recording's sound begins and ends (the 10 ms frames within 40 dB of the \
                loudest), and stores the medians in the model (metadata 'timing'); from then on the \
                recogniser subtracts them from every word time it reports. The recordings must be \
                clean, with silence before and after the speech: ones with under 50 ms of quiet \
                before it or 150 ms after it (noisy or tightly cut) are skipped, and so are ones the \
                model hears no word in. At least 20 must count. Their text is not used. Any earlier \
                calibration is replaced (the raw emission times are measured). The output may be the \
                input; it is written atomically either way. New weights need a new calibration: a \
                trained or deepened model has none, and an average only keeps one every averaged model \
                has. An adapted model inherits its base model's, unmeasured on its own weights: \
                calibrate it if its word times matter and you have clean recordings.

                Example (the clean recordings of the synthetic validation set, as the shipped model \
                was calibrated):
                  earshot model calibrate --data valid-clean.tsv --out models/earshot-base-en.safetensors \\
                    models/earshot-base-en.safetensors
                """)

        @Option(help: "Manifest of clean recordings with silence around their speech (audio-path<TAB>text per line; the text is not used).")
        var data: String

        @Option(help: "The calibrated model to write (.safetensors); may be the input.")
        var out: String

        @Option(help: "Use at most this many recordings, spread evenly over the manifest.")
        var maxRecordings: Int = 500

        @Option(help: "Files recognised in parallel (one per core by default).")
        var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

        @Argument(help: "Model file (.safetensors).")
        var model: String

        static let minimumRecordings = 20

        func validate() throws {
            guard maxRecordings >= Self.minimumRecordings else {
                throw ValidationError("--max-recordings must be at least \(Self.minimumRecordings)")
            }
            guard jobs >= 1 else { throw ValidationError("--jobs must be at least 1") }
        }

        func run() throws {
            // Before minutes of recognition: a folder given as the manifest, an output it cannot write.
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: data, isDirectory: &isDir), isDir.boolValue {
                throw CLIError("--data \(data) is a folder; give a manifest file (audio-path<TAB>text per line)")
            }
            try checkOutputFile("--out", out)
            let list: Manifest
            do { list = try Manifest.read(from: URL(fileURLWithPath: data)) } catch { throw CLIError("--data \(data): \(error)") }
            guard list.entries.count >= Self.minimumRecordings else {
                throw CLIError("--data \(data): \(list.entries.count) recordings; at least \(Self.minimumRecordings) are needed to measure a model's word timing")
            }
            var original: ModelFile
            do { original = try ModelFile.load(path: model) } catch { throw CLIError(error.description) }
            // The measurement reads raw emission times whatever calibration the model has.
            let recognizer: Recognizer
            do { recognizer = try Recognizer(model: original, file: model) } catch { throw CLIError(error.description) }

            let count = list.entries.count
            let chosen = count <= maxRecordings ? Array(0..<count) : (0..<maxRecordings).map { $0 * count / maxRecordings }
            let results = Locked<[WordTimingCalibration.Measurement?]>(slots: chosen.count)
            let failures = Locked<[String?]>(slots: chosen.count)
            let progress = ProgressReporter(total: chosen.count, label: "calibrating")
            forEachConcurrently(chosen.count, jobs: jobs) { i in
                let entry = list.entries[chosen[i]]
                do {
                    let audio = try AudioFile.read(path: list.url(of: entry).path, targetSampleRate: recognizer.sampleRate)
                    results.set(i, WordTimingCalibration.measure(audio.samples, with: recognizer))
                } catch {
                    failures.set(i, "\(error)")
                }
                progress.advance(entry.path)
            }
            progress.finish()
            let failed = failures.current.compactMap { $0 }
            for f in failed { writeErrRaw("earshot: \(f) (skipped)\n") }
            var starts: [Double] = [], ends: [Double] = [], noEdges = 0, noWords = 0
            for m in results.current {
                switch m {
                case .delays(let s, let e)?: starts.append(s); ends.append(e)
                case .noQuietEdges?: noEdges += 1
                case .noWords?: noWords += 1
                case nil: break
                }
            }
            let skipped = "\(noEdges) without 50 ms of quiet before the speech and 150 ms after it, \(noWords) with no word heard, \(failed.count) unreadable"
            guard starts.count >= Self.minimumRecordings,
                  let start = WordTimingCalibration.median(starts), let end = WordTimingCalibration.median(ends) else {
                throw CLIError("--data \(data): only \(starts.count) of \(chosen.count) recordings could be measured (\(skipped)); at least \(Self.minimumRecordings) are needed: give clean recordings with silence before and after the speech")
            }
            let timing = WordTiming(startDelayMs: (start * 1000).rounded(), endDelayMs: (end * 1000).rounded())
            guard abs(timing.startDelayMs) <= WordTiming.maximumMs, abs(timing.endDelayMs) <= WordTiming.maximumMs else {
                throw CLIError("--data \(data): the model places words \(Int(timing.startDelayMs)) ms (starts) and \(Int(timing.endDelayMs)) ms (ends) from the audio's, beyond the ±\(Int(WordTiming.maximumMs)) ms a model may correct: are these recordings what the manifest says, and is this a speech model?")
            }
            func spread(_ xs: [Double]) -> String {
                let sorted = xs.sorted()
                func at(_ q: Double) -> Int { Int((sorted[Int(q * Double(sorted.count - 1))] * 1000).rounded()) }
                return "10th-90th percentile \(at(0.1)) to \(at(0.9)) ms"
            }
            original.description.timing = timing
            original.description.provenance["timing_calibration"] = .object([
                "data": .string(data),
                "recordings": .number(Double(starts.count)),
                "max_recordings": .number(Double(maxRecordings)),
                "skipped": .string(skipped),
                "start_spread": .string(spread(starts)),
                "end_spread": .string(spread(ends)),
            ])
            do { try original.save(path: out) } catch { throw CLIError(error.description) }
            print("measured on \(starts.count) of \(chosen.count) recordings (skipped: \(skipped))")
            print("word starts: \(Int(timing.startDelayMs)) ms late (median; \(spread(starts)))")
            print("word ends:   \(Int(timing.endDelayMs)) ms late (median; \(spread(ends)))")
            print("wrote \(out): these delays are now taken out of every word time it reports")
        }
    }
}
